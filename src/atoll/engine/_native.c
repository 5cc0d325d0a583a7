/*
 * atoll.engine._native: the two hot loops of a point read, in C.
 *
 * Optional: built by `pip install` when a compiler is present; otherwise
 * atoll.engine.sstable_format and atoll.engine.bloom fall back to their Python
 * versions, which define the behaviour (tests/property compares the two). Reads
 * only from the buffers it is given; no I/O, no state.
 *
 *   bloom_may_contain(bits: bytes, nbits: int, k: int, key: bytes) -> bool
 *       docs/formats.md §3.3: h = CRC-32C(key), step = CRC-32(key),
 *       probe i tests bit (h + i * step) mod nbits.
 *   block_find(data: bytes, key: bytes, seq_limit: int) -> tuple | None
 *       docs/formats.md §3: the newest version of key with seq <= seq_limit in a
 *       CRC-verified block: (True, value), (True, None) for a tombstone,
 *       (False, None) if absent, None if its versions may continue in the next
 *       block. Offsets are bounds-checked: a malformed block raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t crc32c_table[256];
static uint32_t crc32_table[256];
static PyObject *absent;  /* (False, None) */
static PyObject *deleted; /* (True, None) */

static void init_table(uint32_t *table, uint32_t poly) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc(const uint32_t *table, const unsigned char *p, Py_ssize_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n-- > 0) c = table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t u32_at(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t u64_at(const unsigned char *p) {
    return (uint64_t)u32_at(p) | (uint64_t)u32_at(p + 4) << 32;
}

static PyObject *bloom_may_contain(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "bloom_may_contain(bits, nbits, k, key)");
        return NULL;
    }
    uint64_t nbits = PyLong_AsUnsignedLongLong(args[1]);
    long k = PyLong_AsLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *bits = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (nbits == 0 || (uint64_t)size * 8 < nbits) {
        PyErr_SetString(PyExc_ValueError, "bloom filter shorter than its declared size");
        return NULL;
    }
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[3]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[3]);
    uint64_t h = crc(crc32c_table, key, klen);
    uint64_t step = crc(crc32_table, key, klen);
    for (long i = 0; i < k; i++) {
        uint64_t pos = h % nbits;
        if (!(bits[pos >> 3] & (1u << (pos & 7)))) Py_RETURN_FALSE;
        h += step;
    }
    Py_RETURN_TRUE;
}

static int key_cmp(const unsigned char *a, Py_ssize_t alen, const unsigned char *b, Py_ssize_t blen) {
    Py_ssize_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, (size_t)n) : 0;
    if (c) return c;
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static PyObject *block_find(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "block_find(data, key, seq_limit)");
        return NULL;
    }
    uint64_t seq_limit = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t klen = PyBytes_GET_SIZE(args[1]);
    if (size < 20) goto malformed;
    uint64_t n = u32_at(d);
    if (20 + 17 * n > (uint64_t)size) goto malformed;
    const unsigned char *koff = d + 8;
    const unsigned char *voff = d + 12 + 4 * n;
    const unsigned char *seqs = d + 16 + 8 * n;
    const unsigned char *kinds = d + 16 + 16 * n;
    uint64_t kbase = 16 + 17 * n;
    uint64_t kend = kbase + u32_at(koff + 4 * n);
    if (kend > (uint64_t)size - 4) goto malformed;
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = (lo + hi) >> 1;
        uint64_t a = u32_at(koff + 4 * mid), b = u32_at(koff + 4 * mid + 4);
        if (a > b || kbase + b > kend) goto malformed;
        if (key_cmp(d + kbase + a, (Py_ssize_t)(b - a), key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (uint64_t j = lo; j < n; j++) {
        uint64_t a = u32_at(koff + 4 * j), b = u32_at(koff + 4 * j + 4);
        if (a > b || kbase + b > kend) goto malformed;
        if (key_cmp(d + kbase + a, (Py_ssize_t)(b - a), key, klen) != 0) {
            Py_INCREF(absent);
            return absent;
        }
        if (u64_at(seqs + 8 * j) <= seq_limit) {
            if (kinds[j] == 0) {
                Py_INCREF(deleted);
                return deleted;
            }
            uint64_t va = u32_at(voff + 4 * j), vb = u32_at(voff + 4 * j + 4);
            if (va > vb || kend + vb > (uint64_t)size - 4) goto malformed;
            PyObject *value = PyBytes_FromStringAndSize((const char *)d + kend + va, (Py_ssize_t)(vb - va));
            if (!value) return NULL;
            PyObject *out = PyTuple_Pack(2, Py_True, value);
            Py_DECREF(value);
            return out;
        }
    }
    Py_RETURN_NONE;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed SSTable block");
    return NULL;
}

static PyMethodDef methods[] = {
    {"bloom_may_contain", (PyCFunction)(void (*)(void))bloom_may_contain, METH_FASTCALL,
     "Bloom filter probe (docs/formats.md 3.3)."},
    {"block_find", (PyCFunction)(void (*)(void))block_find, METH_FASTCALL,
     "Point lookup in a verified SSTable block (docs/formats.md 3)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    init_table(crc32c_table, 0x82F63B78u);
    init_table(crc32_table, 0xEDB88320u);
    absent = PyTuple_Pack(2, Py_False, Py_None);
    deleted = PyTuple_Pack(2, Py_True, Py_None);
    if (!absent || !deleted) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "ABSENT", absent) < 0 || PyModule_AddObjectRef(m, "DELETED", deleted) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
