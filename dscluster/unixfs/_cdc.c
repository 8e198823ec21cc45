/* The inner loops of Kubo's content-defined chunkers, which Python runs at ~2 MB/s and
 * these at several hundred: each finds where the next chunk ends. The parameters, the
 * tables and the buffering around them are in _chunker.py; see that module. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* boxo's buzhash: the hash of the 32 bytes before each candidate end, tried from
 * min - 32 on. data holds the rest of the stream, or at most max bytes of it. */
static PyObject *buzhash_cut(PyObject *self, PyObject *args) {
    Py_buffer data, table;
    Py_ssize_t min;
    unsigned int mask;
    if (!PyArg_ParseTuple(args, "y*y*nI", &data, &table, &min, &mask))
        return NULL;
    Py_ssize_t n = data.len, cut = n;
    if (table.len != 256 * 4 || min < 32) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "buzhash: bad table or min");
        return NULL;
    }
    const uint8_t *buf = data.buf;
    const uint32_t *t = table.buf;
    if (n >= min) {
        uint32_t state = 0;
        for (Py_ssize_t i = min - 32; i < min; i++)
            state = ((state << 1) | (state >> 31)) ^ t[buf[i]];
        Py_ssize_t i = min - 32;
        for (; i <= n - 33; i++) {
            if ((state & mask) == 0)
                break;
            state = ((state << 1) | (state >> 31)) ^ t[buf[i]] ^ t[buf[i + 32]];
        }
        cut = i + 32;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&table);
    return PyLong_FromSsize_t(cut);
}

/* whyrusleeping/chunker's Rabin fingerprint over a 16-byte window: the first min - 16
 * bytes of a chunk are skipped unhashed, the window starts as {1, 0, ...}, and a chunk
 * ends after byte `add` (counted from the chunk start) when add >= min and the digest's
 * low bits are zero, or add reaches max. */
#define RABIN_WINDOW 16

static PyObject *rabin_cut(PyObject *self, PyObject *args) {
    Py_buffer data, out_buf, mod_buf;
    unsigned int shift;
    Py_ssize_t min, max;
    unsigned long long mask;
    if (!PyArg_ParseTuple(args, "y*y*y*InnK", &data, &out_buf, &mod_buf, &shift, &min,
                          &max, &mask))
        return NULL;
    Py_ssize_t n = data.len, cut = n;
    if (out_buf.len != 256 * 8 || mod_buf.len != 256 * 8 || min < RABIN_WINDOW ||
        shift > 56) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out_buf);
        PyBuffer_Release(&mod_buf);
        PyErr_SetString(PyExc_ValueError, "rabin: bad tables or sizes");
        return NULL;
    }
    const uint8_t *buf = data.buf;
    const uint64_t *out = out_buf.buf, *mod = mod_buf.buf;
    uint8_t window[RABIN_WINDOW] = {1};
    int wpos = 1;
    uint64_t digest = 1; /* the reset's slide(1) into an empty window */
    for (Py_ssize_t i = min - RABIN_WINDOW; i < n; i++) {
        uint8_t b = buf[i];
        digest ^= out[window[wpos]];
        window[wpos] = b;
        wpos = (wpos + 1) % RABIN_WINDOW;
        uint64_t index = digest >> shift;
        digest = ((digest << 8) | b) ^ mod[index & 0xff];
        Py_ssize_t add = i + 1;
        if (add >= min && ((digest & mask) == 0 || add >= max)) {
            cut = add;
            break;
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out_buf);
    PyBuffer_Release(&mod_buf);
    return PyLong_FromSsize_t(cut);
}

static PyMethodDef methods[] = {
    {"buzhash_cut", buzhash_cut, METH_VARARGS,
     "buzhash_cut(data, table, min, mask) -> length of the next chunk"},
    {"rabin_cut", rabin_cut, METH_VARARGS,
     "rabin_cut(data, out, mod, shift, min, max, mask) -> length of the next chunk"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cdc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cdc(void) { return PyModule_Create(&module); }
