/* A valid response, then a non-zero exit status: the exit status wins (501). */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    fputs("Content-Type: text/plain\n\npartial\n", stdout);
    fflush(stdout);
    fputs("exit3: giving up with status 3\n", stderr);
    exit(3);
}
