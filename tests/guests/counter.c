/* Keeps a counter in a global: with a fresh instance per request it is always 1. */
#include <stdio.h>

static int counter;

int main(void) {
    counter++;
    printf("Content-Type: text/plain\n\ncounter=%d\n", counter);
    return 0;
}
