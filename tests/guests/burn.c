/* Burns ?ms=N milliseconds of CPU in a busy loop, then answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(void) {
    const char *query = getenv("QUERY_STRING");
    long ms = 0;
    if (query && strncmp(query, "ms=", 3) == 0) ms = atol(query + 3);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    volatile unsigned long spins = 0;
    do {
        for (int i = 0; i < 10000; i++) spins++;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
    printf("Content-Type: text/plain\n\nburned %ld ms\n", ms);
    return 0;
}
