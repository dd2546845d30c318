/*
 * WAGI image resizer: the seed's image-processor, for real.
 *
 *   wasmlet serve examples/resizer/app.yaml --listen 127.0.0.1:3000
 *   curl --data-binary @examples/resizer/sample.jpg 'http://127.0.0.1:3000/?width=640' -o small.jpg
 *
 * The request body is a JPEG or PNG; the answer is a JPEG `width` pixels wide
 * (aspect ratio kept) at the quality the manifest's QUALITY variable sets
 * (1-100, default 85). Decoding, resizing and encoding are the stb
 * single-header libraries: stb_image and stb_image_write from Debian's
 * libstb-dev, and stb_image_resize2 (v2.18), vendored beside this file because
 * bookworm's libstb-dev has only v1 (stb_image_resize.h, scalar; v2 has Wasm
 * SIMD128 paths and halves the resize's time). Built with -msimd128 (flags and
 * why: resizer.cflags); sse2_wasm.h lets stb_image's SSE2 JPEG code run on
 * Wasm SIMD128.
 *
 * Everything is bounded before anything big is allocated: the dimensions the
 * header claims are checked first, so a small file that claims 100000x100000
 * pixels (a decompression bomb) is refused without decoding it. What still
 * runs out of memory (a deflate bomb inside a PNG of sane size) fails malloc
 * inside the guest's memoryLimit and is answered with 413.
 *
 * Built natively with RESIZER_NO_MAIN, the same code is what bench/resizer.py
 * measures against (resize_image below).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No assert(): it would embed this file's path in the module, which then would
 * not rebuild byte for byte from another checkout (tests/test_guest_sources.py). */
#define NDEBUG
#define STBI_ASSERT(x) ((void)0)
#define STBIW_ASSERT(x) ((void)0)
#define STBIR_ASSERT(x) ((void)0)

/* Only the two formats served: less parser surface for hostile bodies. */
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_NO_THREAD_LOCALS
/* stb_image has hand-written SSE2 for its JPEG hot loops; on Wasm, sse2_wasm.h maps
 * them onto SIMD128 so both builds run the same vectorised code. */
#if defined(__wasm_simd128__)
#include "sse2_wasm.h"
#endif
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

#define STBI_WRITE_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

/* Quoted: the vendored copy beside this file (upstream nothings/stb 31c1ad3, unmodified). */
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "stb_image_resize2.h"

/* Limits. A 1920x1080 JPEG grows linear memory to 11 MiB. The largest
 * source accepted, 4096x3072 (12.6 megapixels, a phone camera's photo), needs
 * 97 MiB as an RGBA PNG (inflated rows + pixels), which fits the 128Mi
 * the manifest sets; a progressive 4:4:4 JPEG that size also keeps its DCT
 * coefficients and does not fit: that is answered with 413 (out of memory). */
#define MAX_BODY (32 * 1024 * 1024)
#define MAX_SOURCE_SIDE 16384
#define MAX_SOURCE_PIXELS (4096LL * 3072)
#define MAX_OUTPUT_SIDE 4096
#define DEFAULT_QUALITY 85

typedef struct {
    unsigned char *data;
    size_t len, cap;
    int failed;
} buffer;

static void buffer_append(buffer *b, const void *data, size_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void write_to_buffer(void *context, void *data, int size) {
    buffer_append((buffer *)context, data, (size_t)size);
}

/* The outcome of one request: a JPEG, or a status and a message. */
typedef struct {
    int status;  /* 200 or an HTTP error status */
    char message[256];
    buffer jpeg;
    int width, height;
} result;

__attribute__((format(printf, 3, 4)))
static int fail(result *r, int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(r->message, sizeof r->message, format, args);
    va_end(args);
    r->status = status;
    return status;
}

static int is_jpeg(const unsigned char *p, size_t n) { return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF; }

static int is_png(const unsigned char *p, size_t n) {
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return n >= 8 && memcmp(p, magic, 8) == 0;
}

/* The dimensions a PNG's IHDR or a JPEG's SOFn marker claims, read before stb
 * sees the body: stb refuses a header past 2^30 bytes of pixels with a reason
 * ("unknown image type") that would not tell the client what was wrong. */
static int claimed_size(const unsigned char *p, size_t n, long long *w, long long *h) {
    if (is_png(p, n)) {
        if (n < 24 || memcmp(p + 12, "IHDR", 4) != 0) return 0;
        *w = (long long)p[16] << 24 | p[17] << 16 | p[18] << 8 | p[19];
        *h = (long long)p[20] << 24 | p[21] << 16 | p[22] << 8 | p[23];
        return 1;
    }
    for (size_t i = 2; i + 4 <= n;) {  /* JPEG: walk the marker segments (ITU T.81 annex B) */
        if (p[i] != 0xFF) return 0;
        unsigned marker = p[i + 1];
        if (marker == 0xFF) { i++; continue; }  /* fill byte */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD9)) { i += 2; continue; }  /* no length */
        size_t length = (size_t)p[i + 2] << 8 | p[i + 3];
        int sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            if (i + 9 > n) return 0;
            *h = p[i + 5] << 8 | p[i + 6];
            *w = p[i + 7] << 8 | p[i + 8];
            return 1;
        }
        if (marker == 0xDA || length < 2) return 0;  /* scan data before any frame header */
        i += 2 + length;
    }
    return 0;
}

/* Resizes an encoded JPEG or PNG to `width` pixels wide; returns r->status.
 * `body` is not freed. */
int resize_image(const unsigned char *body, size_t len, long width, int quality, result *r) {
    memset(r, 0, sizeof *r);
    if (len == 0) return fail(r, 400, "empty body: send a JPEG or PNG image as the request body");
    if (!is_jpeg(body, len) && !is_png(body, len))
        return fail(r, 415, "the body is not a JPEG or PNG image (expected image/jpeg or image/png)");
    if (width < 1 || width > MAX_OUTPUT_SIDE)
        return fail(r, 400, "width must be between 1 and %d, got %ld", MAX_OUTPUT_SIDE, width);
    if (len > (size_t)INT32_MAX) return fail(r, 413, "body too large");

    long long claimed_w, claimed_h;
    if (claimed_size(body, len, &claimed_w, &claimed_h) &&
        (claimed_w > MAX_SOURCE_SIDE || claimed_h > MAX_SOURCE_SIDE || claimed_w * claimed_h > MAX_SOURCE_PIXELS))
        return fail(r, 413, "image is %lldx%lld pixels; at most %d on a side and %lld pixels (4096x3072) are accepted",
                    claimed_w, claimed_h, MAX_SOURCE_SIDE, MAX_SOURCE_PIXELS);
    int w, h, channels;
    if (!stbi_info_from_memory(body, (int)len, &w, &h, &channels))
        return fail(r, 400, "cannot read the image header: %s", stbi_failure_reason());
    if (w < 1 || h < 1 || w > MAX_SOURCE_SIDE || h > MAX_SOURCE_SIDE || (long long)w * h > MAX_SOURCE_PIXELS)
        return fail(r, 413, "image is %dx%d pixels; at most %d on a side and %lld pixels (4096x3072) are accepted",
                    w, h, MAX_SOURCE_SIDE, MAX_SOURCE_PIXELS);
    long long out_h = ((long long)h * width + w / 2) / w;
    if (out_h < 1) out_h = 1;
    if (out_h > MAX_OUTPUT_SIDE)
        return fail(r, 400, "width %ld would make the image %lld pixels high; at most %d", width, out_h,
                    MAX_OUTPUT_SIDE);

    /* Transparent PNGs are flattened onto white: JPEG has no alpha. */
    int has_alpha = channels == 2 || channels == 4;
    int x, y, n;
    unsigned char *pixels = stbi_load_from_memory(body, (int)len, &x, &y, &n, has_alpha ? 4 : 3);
    if (!pixels) {
        const char *why = stbi_failure_reason();
        if (why && strcmp(why, "outofmem") == 0)
            return fail(r, 413, "image too large to decode within the memory limit");
        return fail(r, 400, "cannot decode the image: %s", why ? why : "unknown error");
    }
    if (x != w || y != h) {
        stbi_image_free(pixels);
        return fail(r, 400, "cannot decode the image: header and data disagree");
    }
    if (has_alpha) {
        size_t count = (size_t)w * h;
        for (size_t i = 0; i < count; i++) {
            unsigned a = pixels[4 * i + 3];
            for (int c = 0; c < 3; c++)
                pixels[3 * i + c] = (unsigned char)((pixels[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
        }
    }

    int out_w = (int)width, out_hi = (int)out_h;
    unsigned char *small = malloc((size_t)out_w * out_hi * 3);
    /* Catmull-Rom in linear space: the kernel of Pillow's BICUBIC, so the two compare like for like. */
    /* STBIR_TYPE_UINT8 is "linear" (no sRGB decode), as Pillow resizes. */
    int ok = small && stbir_resize(pixels, w, h, 0, small, out_w, out_hi, 0, STBIR_RGB, STBIR_TYPE_UINT8,
                                   STBIR_EDGE_CLAMP, STBIR_FILTER_CATMULLROM) != NULL;
    stbi_image_free(pixels);
    if (!ok) {
        free(small);
        return fail(r, 413, "image too large to resize within the memory limit");
    }
    ok = stbi_write_jpg_to_func(write_to_buffer, &r->jpeg, out_w, out_hi, 3, small, quality);
    free(small);
    if (!ok || r->jpeg.failed) {
        free(r->jpeg.data);
        memset(&r->jpeg, 0, sizeof r->jpeg);
        return fail(r, 500, "cannot encode the JPEG");
    }
    r->width = out_w;
    r->height = out_hi;
    r->status = 200;
    return 200;
}

#ifndef RESIZER_NO_MAIN

static const char *reason(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    default: return "Internal Server Error";
    }
}

static int answer_error(int status, const char *message) {
    printf("Status: %d %s\nContent-Type: text/plain; charset=utf-8\n", status, reason(status));
    if (status == 405) printf("Allow: POST, PUT\n");
    printf("\n%s\n", message);
    return 0;
}

/* The value of `name` in a query string, or NULL; no percent-decoding needed for digits. */
static const char *query_param(const char *query, const char *name, size_t *value_len) {
    size_t name_len = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            *value_len = len - name_len - 1;
            return p + name_len + 1;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Digits only, at most 9 of them (no sign, no spaces); -1 if not a number. */
static long parse_number(const char *s, size_t len) {
    if (len == 0 || len > 9) return -1;
    long value = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value;
}

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    if (!method || (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0))
        return answer_error(405, "POST a JPEG or PNG image as the body, with ?width=N (1-4096) in the query");

    const char *quality_env = getenv("QUALITY");
    int quality = DEFAULT_QUALITY;
    if (quality_env && *quality_env) {
        long q = parse_number(quality_env, strlen(quality_env));
        if (q < 1 || q > 100) return answer_error(500, "the QUALITY variable must be a whole number from 1 to 100");
        quality = (int)q;
    }

    size_t width_len = 0;
    const char *width_text = query_param(getenv("QUERY_STRING"), "width", &width_len);
    if (!width_text) return answer_error(400, "missing ?width=N in the query (N from 1 to 4096)");
    long width = parse_number(width_text, width_len);
    if (width < 0) return answer_error(400, "width must be a whole number from 1 to 4096");

    buffer body = {0};
    /* Reserve what CONTENT_LENGTH announces, so the body is not copied while it grows. */
    const char *length_text = getenv("CONTENT_LENGTH");
    long length = length_text ? parse_number(length_text, strlen(length_text)) : -1;
    if (length > MAX_BODY) return answer_error(413, "body larger than 32 MiB");
    if (length > 0 && (body.data = malloc((size_t)length)) != NULL) body.cap = (size_t)length;
    static unsigned char chunk[65536];  /* not on the stack: wasm-ld's default stack is 64 KiB */
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (body.len + n > MAX_BODY) return answer_error(413, "body larger than 32 MiB");
        buffer_append(&body, chunk, n);
        if (body.failed) return answer_error(413, "body too large for the memory limit");
    }

    result r;
    int status = resize_image(body.data, body.len, width, quality, &r);
    free(body.data);
    if (status != 200) return answer_error(status, r.message);
    printf("Content-Type: image/jpeg\nX-Image-Size: %dx%d\n\n", r.width, r.height);
    fwrite(r.jpeg.data, 1, r.jpeg.len, stdout);
    free(r.jpeg.data);
    return 0;
}
#endif
