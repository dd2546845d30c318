/* A wasmlet app: one WAGI handler (CGI 1.1 over WASI preview 1).
 *
 * Each request runs main() in a fresh instance: the request comes in as CGI
 * variables in the environment (REQUEST_METHOD, PATH_INFO, QUERY_STRING,
 * HTTP_* headers), the body on stdin; the response goes to stdout as CGI
 * headers, a blank line and the body. stderr goes to the host's log
 * (`wasmlet logs APP`). Rebuild app.wasm with ./build.sh after an edit.
 */
#include <stdio.h>
#include <stdlib.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : fallback;
}

int main(void) {
    const char *method = env_or("REQUEST_METHOD", "GET");
    const char *path = env_or("PATH_INFO", "/");
    /* APP_NAME is set in app.yaml (environment). */
    printf("Content-Type: text/plain; charset=utf-8\n\n");
    printf("Hello from %s! (%s %s)\n", env_or("APP_NAME", "wasmlet"), method, path);
    fprintf(stderr, "answered %s %s\n", method, path); /* to the host's log: wasmlet logs APP */
    return 0;
}
