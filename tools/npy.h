/*
 * Reading and writing NumPy .npy files of little-endian float32 and float16
 * arrays in C order: format versions 1.0, 2.0 and 3.0. The reader treats its
 * input as hostile: every length is bounded before it is used.
 */
#ifndef CLATTN_NPY_H
#define CLATTN_NPY_H

#include <stddef.h>
#include <stdio.h>

/* NumPy 2 allows 64 dimensions; nothing clattn reads comes close. */
#define NPY_MAX_RANK 64

/* Real headers are a few hundred bytes; this bound keeps hostile ones cheap. */
#define NPY_MAX_HEADER 65536

/* Room for every message this module writes. */
#define NPY_ERROR_SIZE 192

typedef enum npy_dtype {
    NPY_F32 = 0, /* '<f4' */
    NPY_F16 = 1, /* '<f2' */
} npy_dtype;

typedef struct npy_array {
    npy_dtype dtype;
    int rank;
    size_t shape[NPY_MAX_RANK];
    size_t count; /* elements: the product of shape (1 for rank 0) */
    size_t bytes; /* count times the element size */
    void *data;   /* bytes of little-endian elements; never NULL after a read */
} npy_array;

/* Bytes of one element: 4 or 2. */
size_t npy_dtype_size(npy_dtype dtype);

/* "float32" or "float16". */
const char *npy_dtype_name(npy_dtype dtype);

/*
 * Parses the header dictionary (the text after the length field) into dtype,
 * rank, shape, count and bytes of out; data is left NULL. Returns 0, or -1 with
 * a one-line reason in err.
 */
int npy_parse_header(const char *text, size_t len, npy_array *out, char *err,
                     size_t err_size);

/*
 * Reads a whole .npy file from an open stream: the header, the data, and a
 * check that nothing follows. Returns 0, or -1 with a one-line reason in err
 * (out is then empty). The stream is not closed.
 */
int npy_read_stream(FILE *f, npy_array *out, char *err, size_t err_size);

/* npy_read_stream on the file at path. */
int npy_read(const char *path, npy_array *out, char *err, size_t err_size);

/*
 * Writes a (with a.data holding a.count elements of a.dtype) to path as a
 * version 1.0 file. Returns 0, or -1 with a one-line reason in err; a partly
 * written file is removed.
 */
int npy_write(const char *path, const npy_array *a, char *err, size_t err_size);

/* Frees the data of a read array and empties it. Safe on an empty array. */
void npy_free(npy_array *a);

#endif /* CLATTN_NPY_H */
