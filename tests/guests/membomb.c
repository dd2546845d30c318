/* Allocates and touches 1 MiB at a time until malloc fails, then aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *volatile keep[4096];  /* volatile: the allocations must not be optimised away */

int main(void) {
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *block = malloc(1 << 20);
        if (!block) {
            fprintf(stderr, "membomb: malloc failed after %zu MiB\n", i);
            abort();
        }
        memset(block, 0xAB, 1 << 20);
        keep[i] = block;
    }
    fputs("Content-Type: text/plain\n\nsurvived 4 GiB\n", stdout);
    return 0;
}
