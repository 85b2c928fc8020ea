/* hubbub.transports._send: one send(2) on a non-blocking socket, with the GIL held.
 *
 * The compiled build's direct writes (transports/sink.py) go through this instead of os.write.
 * os.write releases and re-takes the GIL around every write(2): about a tenth of a fan-out's
 * instructions per delivery (callgrind), and with another thread alive (SQLite's writer) a
 * condition variable signalled each time. A write to a non-blocking socket never sleeps, so
 * holding the GIL costs the other threads nothing. send(2) also skips write(2)'s VFS layer.
 * docs/benchmarks.md has the measurements; the pure build uses os.write, with the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* Python ignores SIGPIPE anyway; the flag only spares the signal */
#endif

/* send_now(descriptor, data) -> bytes sent: 0 when the socket's buffer is full (EAGAIN),
 * OSError for any other failure (the caller then writes through the transport, which reports
 * it). os.write's contract, except that a full buffer is 0, not BlockingIOError. */
static PyObject *
send_now(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_now(descriptor, data) takes two arguments");
        return NULL;
    }
    long descriptor = PyLong_AsLong(args[0]);
    if (descriptor == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (descriptor < 0 || descriptor > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "send_now: not a file descriptor");
        return NULL;
    }
    Py_buffer view;
    const char *data;
    Py_ssize_t length;
    int borrowed = PyBytes_CheckExact(args[1]);
    if (borrowed) { /* the frames hubbub sends: no buffer to acquire and release */
        data = PyBytes_AS_STRING(args[1]);
        length = PyBytes_GET_SIZE(args[1]);
    } else {
        if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        data = view.buf;
        length = view.len;
    }
    ssize_t sent;
    do {
        sent = send((int)descriptor, data, (size_t)length, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    int error = errno;
    if (!borrowed) {
        PyBuffer_Release(&view);
    }
    if (sent >= 0) {
        return PyLong_FromSsize_t(sent);
    }
    if (error == EAGAIN || error == EWOULDBLOCK) {
        return PyLong_FromLong(0);
    }
    errno = error;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyMethodDef send_methods[] = {
    {"send_now", (PyCFunction)(void (*)(void))send_now, METH_FASTCALL,
     "send_now(descriptor, data) -> int: send(2) without waiting, the GIL held; 0 when full."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef send_module = {
    PyModuleDef_HEAD_INIT,
    "hubbub.transports._send",
    "A socket write for the compiled build's direct writes (transports/sink.py).",
    0,
    send_methods,
};

PyMODINIT_FUNC
PyInit__send(void)
{
    return PyModuleDef_Init(&send_module);
}
