/*
 * examples/resizer/resizer.c compiled natively, in a loop in one process:
 * the fairest native figure (no process start, warm caches and allocator).
 * bench/resizer.py builds and runs it:
 *   resizer_native_loop IMAGE WIDTH QUALITY ITERATIONS
 * prints one line per iteration: the wall and CPU microseconds of resize_image().
 */
#define RESIZER_NO_MAIN
#include "../examples/resizer/resizer.c"

#include <time.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s IMAGE WIDTH QUALITY ITERATIONS\n", argv[0]);
        return 2;
    }
    FILE *file = fopen(argv[1], "rb");
    if (!file) {
        perror(argv[1]);
        return 1;
    }
    buffer body = {0};
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, file)) > 0) buffer_append(&body, chunk, n);
    fclose(file);
    long width = atol(argv[2]);
    int quality = atoi(argv[3]);
    int iterations = atoi(argv[4]);
    for (int i = 0; i < iterations; i++) {
        struct timespec start, end, cpu_start, cpu_end;
        clock_gettime(CLOCK_MONOTONIC, &start);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_start);
        result r;
        int status = resize_image(body.data, body.len, width, quality, &r);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_end);
        clock_gettime(CLOCK_MONOTONIC, &end);
        if (status != 200) {
            fprintf(stderr, "%d %s\n", status, r.message);
            return 1;
        }
        free(r.jpeg.data);
        printf("%.1f %.1f\n", (end.tv_sec - start.tv_sec) * 1e6 + (end.tv_nsec - start.tv_nsec) / 1e3,
               (cpu_end.tv_sec - cpu_start.tv_sec) * 1e6 + (cpu_end.tv_nsec - cpu_start.tv_nsec) / 1e3);
    }
    free(body.data);
    return 0;
}
