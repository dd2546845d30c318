/* A CGI test guest in ordinary C on wasi-libc (WASI preview 1).
 *
 * build.sh builds it twice from this one file:
 *   cgi_p1_command.wasm  a preview 1 command (_start), what WAGI runs today;
 *   cgi_p1_adapted.wasm  a preview 2 component: built as a reactor that
 *                        exports wasi:cli/run#run, then wrapped by
 *                        `wasm-tools component new --adapt` with the
 *                        wasi_snapshot_preview1 reactor adapter.
 * Same code on both ABIs, so their per-request costs compare directly.
 *
 * PATH_INFO picks what it does: /trap, /exit (exit status 3), /env, and
 * anything else echoes the method, query, argv and body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static int handle(int argc, char **argv) {
    const char *path = getenv("PATH_INFO");
    path = path ? path : "";
    if (strcmp(path, "/trap") == 0)
        __builtin_trap();
    if (strcmp(path, "/exit") == 0)
        exit(3);
    fputs("Content-Type: text/plain\nX-Guest: cgi-p1\n\n", stdout);
    if (strcmp(path, "/env") == 0) {
        for (char **e = environ; *e; e++)
            printf("%s\n", *e);
        return 0;
    }
    const char *method = getenv("REQUEST_METHOD");
    const char *query = getenv("QUERY_STRING");
    printf("method=%s\nquery=%s\nargv=", method ? method : "", query ? query : "");
    for (int i = 0; i < argc; i++)
        printf("%s%s", i ? "|" : "", argv[i]);
    fputs("\nbody=", stdout);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        fwrite(buf, 1, n, stdout);
    fputs("\n", stdout);
    return 0;
}

#ifdef WASI_CLI_RUN
/* The reactor build: wasi-libc's reactor start-up gives no argc/argv, so
 * fetch them the preview 1 way (the adapter maps these onto wasi:cli). */
#include <wasi/api.h>

__attribute__((export_name("wasi:cli/run@0.2.0#run"))) int run(void) {
    size_t argc = 0, size = 0;
    if (__wasi_args_sizes_get(&argc, &size) != 0)
        return 1;
    char **argv = calloc(argc + 1, sizeof *argv);
    char *buf = malloc(size ? size : 1);
    if (argc && __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0)
        return 1;
    int status = handle((int)argc, argv);
    fflush(stdout);
    return status != 0; /* result<_, _>: 0 is ok, 1 is err */
}
#else
int main(int argc, char **argv) { return handle(argc, argv); }
#endif
