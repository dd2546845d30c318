/* Writes a valid header, then output without end. */
#include <stdio.h>
#include <string.h>

int main(void) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    fputs("Content-Type: text/plain\n\n", stdout);
    for (;;) fwrite(chunk, 1, sizeof chunk, stdout);
}
