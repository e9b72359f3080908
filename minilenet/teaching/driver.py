"""The program a graded unit runs in: the grader's child process.

The grader (``sandbox.run_unit``) passes this file's text on the command line,
``python -I -S -B -c <this file> <settings as JSON>``, so what runs is the
grader's own code, never a file a student could have replaced. In order, it:

1. lowers its resource limits and, when started as root, covers the grader's
   files with empty folders (a private mount namespace) and becomes the
   unprivileged sandbox user: from here on nothing of the instructor's is
   readable or writable;
2. puts the private copy of the submission first on ``sys.path`` (with ``-I -S``
   nothing else of the environment is: no PYTHONPATH, no user site, no ``.pth``
   files, so no editable install of the instructor's package);
3. installs an audit hook (PEP 578) that refuses, and reports, subprocesses,
   ctypes, signals, sockets, frame and gc introspection and writes outside the
   private folder: a tripwire, not the wall;
4. imports the submission's ``minilenet`` (refusing any other), puts the
   grader's reference of each dependency the settings list in place of the
   student's (each function alone, executed from its source in a namespace of
   its own), runs the unit's probe on every case and writes the outputs, an
   ``.npz``, to the pipe the grader reads. The grader trusts none of it.
"""
import json
import os
import resource
import sys

np = None                                   # numpy, imported once sys.path is set
REFUSED = []                                # the events the tripwire refused


# ------------------------------------------------ 1. limits, namespace, user
def _others_can_read(path):
    """True when a user who is neither the owner nor in the group can read ``path``."""
    path = os.path.realpath(path)
    if not os.stat(path).st_mode & 0o004:
        return False
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def _relocate(entry, seen):
    """Point ``sys.path`` and the loaded packages' ``__path__`` from ``entry`` to ``seen``."""
    sys.path[:] = [seen if p == entry else p for p in sys.path]
    for module in list(sys.modules.values()):               # collections, encodings
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [seen + p[len(entry):] if p.startswith(entry + "/") else p
                         for p in search]


def enter_sandbox(settings):
    """Cover the grader's files (root: a private mount namespace), become the
    sandbox user, lower the limits. Returns the site folders, as now seen."""
    site = list(settings["site"])
    if settings["cover"] and os.geteuid() == 0:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        bind, recursive, private = 4096, 16384, 1 << 18
        if libc.unshare(0x00020000) == 0:                      # CLONE_NEWNS
            libc.mount(b"none", b"/", None, recursive | private, None)
            # Folders of this Python that the sandbox user could not read (a Python
            # under /root) are shown to it again, bound under the private folder.
            for i, entry in enumerate(list(sys.path) + site if settings["user"] else []):
                if os.path.isdir(entry) and not _others_can_read(entry):
                    seen = os.path.join(settings["private"], "python", str(i))
                    os.makedirs(seen)
                    libc.mount(os.fsencode(entry), os.fsencode(seen), None, bind | recursive,
                               None)
                    _relocate(entry, seen)
                    site = [seen if p == entry else p for p in site]
            for path in settings["cover"]:                     # the grader's files: empty
                if os.path.isdir(path):                        # nosuid, nodev, noexec
                    libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 2 | 4 | 8,
                               b"size=4k,mode=000")
                else:
                    libc.mount(b"/dev/null", os.fsencode(path), None, bind, None)
        del libc, ctypes
        sys.modules.pop("ctypes", None)
    if settings["user"] is not None:
        uid, gid = settings["user"]
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    for name, value in settings["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.umask(0o077)
    return site


# ------------------------------------------------------------ 3. the tripwire
_FORBIDDEN = ("subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
              "os.forkpty", "os.kill", "os.killpg", "signal.", "ctypes.", "socket.",
              "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
              "os.chmod", "os.chown", "os.link", "os.symlink", "os.truncate", "pty.",
              "resource.setrlimit", "resource.prlimit", "webbrowser.", "sys.remote_exec")
_MOVES = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.utime")


def install_tripwire(settings):
    """An audit hook refusing (and recording in REFUSED) what a unit has no business doing."""
    private = settings["private"]
    denied = tuple(os.path.realpath(p) for p in settings["cover"])
    readable = tuple(os.path.realpath(p) for p in (
        settings["copy"], private, *sys.path, "/dev/null", "/dev/urandom", "/proc/self",
        "/etc/localtime", "/usr", "/lib"))

    def inside(path, roots):
        try:
            path = os.path.realpath(os.fsdecode(path)) if not isinstance(path, int) else None
        except (TypeError, ValueError):
            return False
        if path is None:
            return True
        return not any(path == d or path.startswith(d + "/") for d in denied) and \
            any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def tripwire(event, args):
        refused = event.startswith(_FORBIDDEN)
        if event == "open" and args and args[0] is not None:
            mode, flags = args[1] or "r", args[2] or 0
            writes = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR)
            refused = not inside(args[0], (private,) if writes else readable)
        elif event in _MOVES and args:
            refused = not inside(args[0], (private,))
        elif event == "os.listdir" and args and args[0] is not None:
            refused = not inside(args[0], readable)
        if refused:
            if not (event == "ctypes.dlopen" and args and args[0] == "libc.so.6"):
                REFUSED.append(event)     # (the package's own malloc tuning asks for libc)
            raise PermissionError(f"{event} is refused in a graded unit")
    sys.addaudithook(tripwire)


# ------------------------------------------------------------- 4. the probes
def _module(name, source):
    module = type(sys)(name)
    exec(compile(source, f"<grader {name}>", "exec"), module.__dict__)
    return module


def _put_references(numpy_ref, sources):
    """Put each dependency's reference (its source, executed alone) in
    ``numpy_ref``, in order, its other names resolved to the copy's functions."""
    for name, source in sources:
        namespace = {"np": np, "__name__": "grader_reference"}
        exec(compile(source, f"<reference {name}>", "exec"), namespace)
        function = namespace[name]
        codes, used = [function.__code__], set()
        while codes:
            code = codes.pop()
            used.update(code.co_names)
            codes += [c for c in code.co_consts if hasattr(c, "co_names")]
        for other in used - set(namespace):
            if hasattr(numpy_ref, other):
                namespace[other] = getattr(numpy_ref, other)
        setattr(numpy_ref, name, function)


def _where(error):
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "" if tb is None else f" ({os.path.basename(tb.tb_frame.f_code.co_filename)}, " \
                                 f"line {tb.tb_lineno})"


def main(settings):
    """Run the probe on every case: (report, {"<case>::<output>": array})."""
    copy, out = settings["copy"], {}
    with np.load(os.path.join(settings["private"], "inputs.npz"), allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    try:
        import minilenet
        found = os.path.realpath(minilenet.__file__)
        if not found.startswith(os.path.realpath(copy) + os.sep):
            raise ImportError(f"import minilenet found {found}, not the submission")
        probes = _module("grader_probes", settings["probes"])
        ml = probes.namespace()
        _put_references(ml.numpy_ref, settings["references"])
    except NotImplementedError as e:
        return {"status": "not implemented", "message": str(e)}, out
    except BaseException as e:                                 # noqa: B036 (a hostile copy)
        return {"status": "error", "message": f"{type(e).__name__}: {e}{_where(e)}"}, out
    cases = sorted({key.split("::")[0] for key in inputs}, key=int)
    for case in cases:
        given = {k.split("::", 1)[1]: v for k, v in inputs.items() if k.startswith(case + "::")}
        try:
            for key, value in probes.PROBES[settings["probe"]](ml, given).items():
                out[f"{case}::{key}"] = np.asarray(value)
        except NotImplementedError as e:
            return {"status": "not implemented", "message": str(e), "case": case}, out
        except BaseException as e:                             # noqa: B036
            return {"status": "error", "message": f"{type(e).__name__}: {e}{_where(e)}",
                    "case": case, "kind": type(e).__name__}, out
    return {"status": "ok"}, out


if __name__ == "__main__":
    import io
    settings = json.loads(sys.argv[1])
    site = enter_sandbox(settings)
    sys.path[:0] = [settings["copy"]]                      # ------------ 2. sys.path
    sys.path += site
    import numpy as np
    import threadpoolctl                                   # noqa: F401 (before the tripwire)
    install_tripwire(settings)
    report, arrays = main(settings)
    if REFUSED:
        report = {"status": "refused", "message": ", ".join(sorted(set(REFUSED)))}
    buffer = io.BytesIO()
    np.savez(buffer, report=np.array(json.dumps(report)), **{
        k: v for k, v in arrays.items() if v.dtype.kind in "biuf"})
    with os.fdopen(settings["channel"], "wb") as channel:
        channel.write(buffer.getvalue())
