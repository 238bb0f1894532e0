#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define PREAMBLE_SIZE 6
#define CHUNK_BYTES ((size_t)1 << 24)
#define KEY_SIZE 32

static const unsigned char magic[PREAMBLE_SIZE] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct scanner {
    const char *text;
    size_t len;
    size_t pos;
    const char *why;    /* set by the first failure */
    char key[KEY_SIZE]; /* the key the failure concerns, if any */
} scanner;

typedef struct fields {
    char descr[KEY_SIZE];
    int have_descr, have_order, have_shape;
    int fortran_order;
} fields;

static int fail(char *err, size_t err_size, const char *format, ...)
{
    va_list args;

    if (err_size > 0) {
        va_start(args, format);
        vsnprintf(err, err_size, format, args);
        va_end(args);
    }
    return -1;
}

size_t npy_dtype_size(npy_dtype dtype)
{
    return dtype == NPY_F16 ? 2 : 4;
}

const char *npy_dtype_name(npy_dtype dtype)
{
    return dtype == NPY_F16 ? "float16" : "float32";
}

void npy_free(npy_array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Replaces bytes that could break a one-line message. */
static void sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e)
            *s = '?';
    }
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int peek(const scanner *sc)
{
    return sc->pos < sc->len ? (unsigned char)sc->text[sc->pos] : -1;
}

static int stop(scanner *sc, const char *why)
{
    if (sc->why == NULL)
        sc->why = why;
    return -1;
}

static int stop_at_key(scanner *sc, const char *why, const char *key)
{
    if (sc->why == NULL)
        snprintf(sc->key, sizeof sc->key, "%s", key);
    return stop(sc, why);
}

static void skip_space(scanner *sc)
{
    while (is_space(peek(sc)))
        sc->pos++;
}

/* Consumes c (after spaces) when it comes next. */
static int accept(scanner *sc, int c)
{
    skip_space(sc);
    if (peek(sc) != c)
        return 0;
    sc->pos++;
    return 1;
}

/* A quoted string without escapes, as NumPy writes keys and dtypes. */
static int scan_string(scanner *sc, char *buf, size_t cap)
{
    size_t n = 0;
    int quote;

    skip_space(sc);
    quote = peek(sc);
    if (quote != '\'' && quote != '"')
        return stop(sc, "expected a quoted string");
    sc->pos++;

    for (;;) {
        int c = peek(sc);

        if (c < 0 || c == '\\' || c == '\n')
            return stop(sc, "unterminated or escaped string");
        sc->pos++;
        if (c == quote)
            break;
        if (n + 1 >= cap)
            return stop(sc, "string too long");
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return 0;
}

static int scan_word(scanner *sc, const char *word)
{
    size_t n = strlen(word);

    if (sc->len - sc->pos < n || memcmp(sc->text + sc->pos, word, n) != 0)
        return 0;
    sc->pos += n;
    return 1;
}

static int scan_bool(scanner *sc, int *value)
{
    skip_space(sc);
    if (scan_word(sc, "True"))
        *value = 1;
    else if (scan_word(sc, "False"))
        *value = 0;
    else
        return stop(sc, "expected True or False");

    if (is_digit(peek(sc)) || (peek(sc) >= 'A' && peek(sc) <= 'z'))
        return stop(sc, "expected True or False");
    return 0;
}

static int scan_size(scanner *sc, size_t *value)
{
    size_t v = 0;

    skip_space(sc);
    if (!is_digit(peek(sc)))
        return stop(sc, "expected a dimension");

    while (is_digit(peek(sc))) {
        size_t d = (size_t)(peek(sc) - '0');

        if (v > (SIZE_MAX - d) / 10)
            return stop(sc, "a dimension is too large");
        v = v * 10 + d;
        sc->pos++;
    }
    *value = v;
    return 0;
}

static int scan_shape(scanner *sc, npy_array *a)
{
    if (!accept(sc, '('))
        return stop(sc, "expected '(' to open the shape");
    a->rank = 0;
    if (accept(sc, ')'))
        return 0;

    for (;;) {
        if (a->rank == NPY_MAX_RANK)
            return stop(sc, "too many dimensions");
        if (scan_size(sc, &a->shape[a->rank]) != 0)
            return -1;
        a->rank++;

        if (accept(sc, ',')) {
            if (accept(sc, ')'))
                return 0;
            continue;
        }
        if (!accept(sc, ')'))
            return stop(sc, "expected ',' or ')' in the shape");
        if (a->rank == 1)
            return stop(sc, "a one-dimensional shape needs a trailing comma");
        return 0;
    }
}

static int scan_value(scanner *sc, const char *key, fields *h, npy_array *a)
{
    int *seen;
    int rc;

    if (strcmp(key, "descr") == 0) {
        seen = &h->have_descr;
        skip_space(sc);
        if (peek(sc) == '[')
            return stop(sc, "structured dtypes are not supported");
        rc = scan_string(sc, h->descr, sizeof h->descr);
    } else if (strcmp(key, "fortran_order") == 0) {
        seen = &h->have_order;
        rc = scan_bool(sc, &h->fortran_order);
    } else if (strcmp(key, "shape") == 0) {
        seen = &h->have_shape;
        rc = scan_shape(sc, a);
    } else {
        return stop_at_key(sc, "unexpected key", key);
    }

    if (*seen)
        return stop_at_key(sc, "duplicate key", key);
    *seen = 1;
    return rc;
}

static int scan_dict(scanner *sc, fields *h, npy_array *a)
{
    if (!accept(sc, '{'))
        return stop(sc, "expected '{'");
    if (accept(sc, '}'))
        return 0;

    for (;;) {
        char key[KEY_SIZE];

        if (scan_string(sc, key, sizeof key) != 0)
            return -1;
        if (!accept(sc, ':'))
            return stop(sc, "expected ':' after a key");
        if (scan_value(sc, key, h, a) != 0)
            return -1;

        if (accept(sc, '}'))
            return 0;
        if (!accept(sc, ','))
            return stop(sc, "expected ',' or '}'");
        if (accept(sc, '}'))
            return 0;
    }
}

static int check_fields(const fields *h, npy_array *a, char *err, size_t err_size)
{
    const char *missing = !h->have_descr   ? "descr"
                          : !h->have_order ? "fortran_order"
                          : !h->have_shape ? "shape"
                                           : NULL;
    char descr[KEY_SIZE];

    if (missing != NULL)
        return fail(err, err_size, "header lacks the key '%s'", missing);

    if (strcmp(h->descr, "<f4") == 0) {
        a->dtype = NPY_F32;
    } else if (strcmp(h->descr, "<f2") == 0) {
        a->dtype = NPY_F16;
    } else {
        memcpy(descr, h->descr, sizeof descr);
        sanitize(descr);
        return fail(err, err_size, "unsupported dtype '%s' (expected '<f4' or '<f2')",
                    descr);
    }

    if (h->fortran_order)
        return fail(err, err_size, "Fortran-ordered arrays are not supported");
    return 0;
}

static int count_elements(npy_array *a, char *err, size_t err_size)
{
    size_t count = 1;
    size_t size = npy_dtype_size(a->dtype);

    for (int i = 0; i < a->rank; i++) {
        size_t d = a->shape[i];

        if (d != 0 && count > SIZE_MAX / d)
            return fail(err, err_size, "the shape's element count overflows");
        count *= d;
    }
    if (count > SIZE_MAX / size)
        return fail(err, err_size, "the shape's byte count overflows");

    a->count = count;
    a->bytes = count * size;
    return 0;
}

static void report_scan_error(scanner *sc, char *err, size_t err_size)
{
    if (sc->key[0] == '\0') {
        fail(err, err_size, "malformed header: %s at byte %zu", sc->why, sc->pos);
        return;
    }
    sanitize(sc->key);
    fail(err, err_size, "malformed header: %s '%s' at byte %zu", sc->why, sc->key,
         sc->pos);
}

int npy_parse_header(const char *text, size_t len, npy_array *out, char *err,
                     size_t err_size)
{
    scanner sc = {text, len, 0, NULL, ""};
    fields h;

    memset(out, 0, sizeof *out);
    memset(&h, 0, sizeof h);

    if (scan_dict(&sc, &h, out) == 0) {
        skip_space(&sc);
        if (sc.pos != sc.len)
            stop(&sc, "unexpected bytes after the dictionary");
    }
    if (sc.why != NULL) {
        report_scan_error(&sc, err, err_size);
        memset(out, 0, sizeof *out);
        return -1;
    }

    if (check_fields(&h, out, err, err_size) != 0 ||
        count_elements(out, err, err_size) != 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

static int read_error(FILE *f, const char *what, char *err, size_t err_size)
{
    if (ferror(f))
        return fail(err, err_size, "read failed: %s", strerror(errno));
    return fail(err, err_size, "truncated: the file ends inside the %s", what);
}

/* Reads the magic, the version and the header length. */
static int read_preamble(FILE *f, size_t *header_len, char *err, size_t err_size)
{
    unsigned char p[PREAMBLE_SIZE + 6];
    size_t got = fread(p, 1, PREAMBLE_SIZE + 2, f);
    size_t width;

    if (got == 0 && !ferror(f))
        return fail(err, err_size, "the file is empty");
    if (memcmp(p, magic, got < PREAMBLE_SIZE ? got : PREAMBLE_SIZE) != 0)
        return fail(err, err_size, "not a .npy file (bad magic)");
    if (got < PREAMBLE_SIZE + 2)
        return read_error(f, "preamble", err, err_size);

    if (p[6] < 1 || p[6] > 3 || p[7] != 0)
        return fail(err, err_size, "unsupported .npy format version %u.%u",
                    (unsigned)p[6], (unsigned)p[7]);

    width = p[6] == 1 ? 2 : 4;
    if (fread(p + 8, 1, width, f) != width)
        return read_error(f, "preamble", err, err_size);

    *header_len = 0;
    for (size_t i = 0; i < width; i++)
        *header_len |= (size_t)p[8 + i] << (8 * i);
    if (*header_len > NPY_MAX_HEADER)
        return fail(err, err_size, "header length %zu exceeds the limit of %d bytes",
                    *header_len, NPY_MAX_HEADER);
    return 0;
}

static int read_header(FILE *f, npy_array *out, char *err, size_t err_size)
{
    size_t len = 0;
    char *text;
    int rc;

    if (read_preamble(f, &len, err, err_size) != 0)
        return -1;

    text = malloc(len > 0 ? len : 1);
    if (text == NULL)
        return fail(err, err_size, "out of memory");
    if (fread(text, 1, len, f) != len) {
        free(text);
        return read_error(f, "header", err, err_size);
    }

    rc = npy_parse_header(text, len, out, err, err_size);
    free(text);
    return rc;
}

/* Bytes from the position to the end, or -1 when the stream cannot seek. */
static long long bytes_left(FILE *f)
{
    off_t here = ftello(f);
    off_t end;

    if (here < 0 || fseeko(f, 0, SEEK_END) != 0)
        return -1;
    end = ftello(f);
    if (fseeko(f, here, SEEK_SET) != 0 || end < here)
        return -1;
    return (long long)(end - here);
}

static int check_size(const npy_array *a, long long left, char *err, size_t err_size)
{
    if (left < 0 || (unsigned long long)left == a->bytes)
        return 0;
    if ((unsigned long long)left < a->bytes)
        return fail(err, err_size,
                    "truncated data: the shape needs %zu bytes, the file holds %lld",
                    a->bytes, left);
    return fail(err, err_size, "%llu bytes of trailing data after the array",
                (unsigned long long)left - a->bytes);
}

/*
 * Reads a->bytes into a buffer that grows with what actually arrives, so
 * that a header that lies about the size cannot make a stream that cannot
 * seek allocate more than it holds.
 */
static int read_data(FILE *f, npy_array *a, long long left, char *err, size_t err_size)
{
    size_t cap = left >= 0 || a->bytes < CHUNK_BYTES ? a->bytes : CHUNK_BYTES;
    unsigned char *buf = malloc(cap > 0 ? cap : 1);
    size_t have = 0;

    while (buf != NULL && have < a->bytes) {
        size_t want;

        if (have == cap) {
            unsigned char *grown;

            cap = cap <= a->bytes / 2 ? cap * 2 : a->bytes;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
        }

        want = cap - have;
        have += fread(buf + have, 1, want, f);
        if (have < cap)
            break;
    }

    if (buf == NULL)
        return fail(err, err_size, "out of memory for %zu bytes of data", a->bytes);
    a->data = buf;
    if (have < a->bytes)
        return read_error(f, "data", err, err_size);
    return 0;
}

int npy_read_stream(FILE *f, npy_array *out, char *err, size_t err_size)
{
    const uint16_t probe = 1;
    long long left;

    memset(out, 0, sizeof *out);
    if (*(const unsigned char *)&probe != 1)
        return fail(err, err_size, "big-endian hosts are not supported");

    if (read_header(f, out, err, err_size) != 0)
        return -1;

    left = bytes_left(f);
    if (check_size(out, left, err, err_size) != 0 ||
        read_data(f, out, left, err, err_size) != 0) {
        npy_free(out);
        return -1;
    }

    if (fgetc(f) != EOF) {
        npy_free(out);
        return fail(err, err_size, "trailing data after the array");
    }
    return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    int rc;

    memset(out, 0, sizeof *out);
    if (f == NULL)
        return fail(err, err_size, "cannot open: %s", strerror(errno));

    rc = npy_read_stream(f, out, err, err_size);
    fclose(f);
    return rc;
}

/* Formats the header dictionary, padded with spaces to a 64-byte boundary. */
static size_t format_header(const npy_array *a, char *buf, size_t cap)
{
    const char *descr = a->dtype == NPY_F16 ? "<f2" : "<f4";
    size_t n = (size_t)snprintf(buf, cap,
                                "{'descr': '%s', 'fortran_order': False, "
                                "'shape': (",
                                descr);

    for (int i = 0; i < a->rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%zu", i > 0 ? ", " : "", a->shape[i]);
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n, "%s), }", a->rank == 1 ? "," : "");

    while (n < cap && (PREAMBLE_SIZE + 4 + n + 1) % 64 != 0)
        buf[n++] = ' ';
    if (n >= cap)
        return 0;
    buf[n++] = '\n';
    return n;
}

static int check_writable(const npy_array *a, char *err, size_t err_size)
{
    npy_array copy = *a;

    if (a->rank < 0 || a->rank > NPY_MAX_RANK ||
        (a->dtype != NPY_F32 && a->dtype != NPY_F16))
        return fail(err, err_size, "invalid array description");
    if (count_elements(&copy, err, err_size) != 0)
        return -1;
    if (copy.count != a->count || copy.bytes != a->bytes ||
        (a->bytes > 0 && a->data == NULL))
        return fail(err, err_size, "array size does not match its shape");
    return 0;
}

int npy_write(const char *path, const npy_array *a, char *err, size_t err_size)
{
    char header[2048];
    unsigned char pre[PREAMBLE_SIZE + 4];
    size_t len;
    FILE *f;
    int ok, saved;

    if (check_writable(a, err, err_size) != 0)
        return -1;
    len = format_header(a, header, sizeof header);
    if (len == 0 || len > 0xffff)
        return fail(err, err_size, "header too long");

    memcpy(pre, magic, PREAMBLE_SIZE);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(len & 0xff);
    pre[9] = (unsigned char)(len >> 8);

    f = fopen(path, "wb");
    if (f == NULL)
        return fail(err, err_size, "cannot create: %s", strerror(errno));

    ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre &&
         fwrite(header, 1, len, f) == len && fwrite(a->data, 1, a->bytes, f) == a->bytes;
    saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }

    if (!ok) {
        remove(path);
        return fail(err, err_size, "cannot write: %s", strerror(saved));
    }
    return 0;
}
