/*
 * Tries to read files it was given and files it was not, and to write into a
 * read-only grant. One line per attempt: "PATH: OK <first line>" or
 * "PATH: DENIED <errno>". The host grants /data (read-only) in the tests.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void try_read(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("%s: DENIED %s\n", path, strerror(errno));
        return;
    }
    char line[128] = {0};
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    line[strcspn(line, "\n")] = 0;
    printf("%s: OK %s\n", path, line);
    fclose(f);
}

int main(void) {
    printf("Content-Type: text/plain\n\n");
    try_read("/data/ok.txt");
    try_read("/data/../secret.txt");            /* escape with .. */
    try_read("/data/escape-link");              /* a symlink pointing outside */
    try_read("/data/dir-link/secret.txt");      /* a directory symlink pointing outside */
    try_read("/etc/passwd");                    /* never granted */
    try_read("/secret.txt");
    FILE *w = fopen("/data/new.txt", "w");      /* the grant is read-only */
    printf("/data/new.txt: %s\n", w ? "WRITTEN" : "DENIED write");
    if (w) fclose(w);
    return 0;
}
