"""An AOTInductor package's model library, called through its C interface with ctypes.

torch's Python binding of a package (``torch._inductor.aoti_load_package``) keeps the GIL for
the whole run: while a CPU frame is in the engine (25-35 ms) no other Python thread of the
process moves, so the capture threads decode the next pair only after it, in series with the
engine (docs/engines.md, "The GIL and the aoti engine"). The library inside the package exports a C ABI
(``torch/csrc/inductor/aoti_runtime/interface.h``); a ctypes call releases the GIL like any
foreign call, so capture, planning and publishing overlap the engine.

Tensors cross the boundary as ``AtenTensorHandle`` (an owned ``at::Tensor*``), made and taken
back with torch's ``torch._C._aoti`` helpers.
"""

from __future__ import annotations

import ctypes
import logging
import tempfile
import zipfile
from pathlib import Path

import torch

from rtfuse.errors import RtfuseError

log = logging.getLogger(__name__)

_Handle = ctypes.c_void_p
_SIZE = ctypes.POINTER(ctypes.c_size_t)
_STR = ctypes.POINTER(ctypes.c_char_p)


class _Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("handle", _Handle)]


_SIGNATURES = {
    "AOTInductorModelContainerCreateWithDevice": [ctypes.POINTER(_Handle), ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p],
    "AOTInductorModelContainerDelete": [_Handle],
    "AOTInductorModelContainerRun": [_Handle, ctypes.POINTER(_Handle), ctypes.c_size_t, ctypes.POINTER(_Handle),
                                     ctypes.c_size_t, _Handle, _Handle],
    "AOTInductorModelContainerGetNumInputs": [_Handle, _SIZE],
    "AOTInductorModelContainerGetNumOutputs": [_Handle, _SIZE],
    "AOTInductorModelContainerGetNumConstants": [_Handle, _SIZE],
    "AOTInductorModelContainerGetConstantName": [_Handle, ctypes.c_size_t, _STR],
    "AOTInductorModelContainerGetConstantOriginalFQN": [_Handle, ctypes.c_size_t, _STR],
    "AOTInductorModelContainerUpdateUserManagedConstantBufferPairs": [_Handle, ctypes.POINTER(_Entry), ctypes.c_size_t,
                                                                      ctypes.c_bool, ctypes.c_bool],
}

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype, _capsule_new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


def _new_handles(tensors: list[torch.Tensor]) -> list[int]:
    """Owned ``at::Tensor*`` handles of ``tensors`` (the same storage, no copy)."""
    return [_capsule_pointer(c, None) for c in torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(tensors)]


def _take_handles(handles: list[int]) -> list[torch.Tensor]:
    """Tensors that own ``handles`` from now on (freed with them)."""
    return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs([_capsule_new(h, None, None) for h in handles])


def _model_library(package: Path, into: str) -> str:
    try:
        with zipfile.ZipFile(package) as archive:
            libs = [n for n in archive.namelist() if n.endswith(".so") and "/data/aotinductor/" in n]
            if len(libs) != 1:
                raise RtfuseError(f"{package}: expected one model library in the package, found {len(libs)}; re-export it")
            return archive.extract(libs[0], into)
    except zipfile.BadZipFile as exc:
        raise RtfuseError(f"{package}: not an AOTInductor package ({exc}); re-export it") from None


class MissingInterface(RtfuseError):
    """The package was built by a torch whose AOTInductor runtime lacks a function used here."""


class AOTIModel:
    """One model of a CPU AOTInductor package: ``model(*inputs) -> list of outputs``.

    Plan-dependent weights stay in the caller's tensors (``use_constants``): the model reads them
    where they are, so writing those tensors in place changes what the next run computes.
    """

    def __init__(self, package: str | Path):
        with tempfile.TemporaryDirectory(prefix="rtfuse-aoti-") as tmp:
            try:
                self._lib = ctypes.CDLL(_model_library(Path(package), tmp))  # mapped; the file may go
            except OSError as exc:
                raise RtfuseError(f"{package}: cannot load its model library ({exc}); re-export it") from None
        missing = [name for name in _SIGNATURES if not hasattr(self._lib, name)]
        if missing:
            raise MissingInterface(f"{package}: its model library lacks {', '.join(missing)}")
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(self._lib, name)
            fn.argtypes, fn.restype = argtypes, ctypes.c_int32
        self._container = _Handle()
        self._call("CreateWithDevice", ctypes.byref(self._container), 1, b"cpu", None)
        self.num_inputs, self.num_outputs = self._count("GetNumInputs"), self._count("GetNumOutputs")
        self._constant_names = self._constants_by_fqn()
        self._user_constants: list[int] = []  # handles the library reads from until close()

    def _call(self, name: str, *args: object) -> None:
        err = getattr(self._lib, "AOTInductorModelContainer" + name)(*args)
        if err != 0:
            raise RtfuseError(f"AOTInductor {name} failed (error {err}; the runtime's message is on stderr)")

    def _count(self, what: str) -> int:
        n = ctypes.c_size_t()
        self._call(what, self._container, ctypes.byref(n))
        return n.value

    def _constants_by_fqn(self) -> dict[str, bytes]:
        names: dict[str, bytes] = {}
        for i in range(self._count("GetNumConstants")):
            name, fqn = ctypes.c_char_p(), ctypes.c_char_p()
            self._call("GetConstantName", self._container, i, ctypes.byref(name))
            self._call("GetConstantOriginalFQN", self._container, i, ctypes.byref(fqn))
            names[fqn.value.decode()] = name.value
        return names

    def constant_fqns(self) -> list[str]:
        return list(self._constant_names)

    def use_constants(self, tensors: dict[str, torch.Tensor]) -> None:
        """Make the model read these constants (by state-dict name) from the given tensors."""
        missing = [n for n in tensors if n not in self._constant_names]
        if missing:
            raise RtfuseError(f"not constants of this package: {', '.join(missing[:3])}")
        handles = _new_handles([t.detach() for t in tensors.values()])
        entries = (_Entry * len(handles))(*[_Entry(self._constant_names[n], h) for n, h in zip(tensors, handles)])
        self._call("UpdateUserManagedConstantBufferPairs", self._container, entries, len(handles), False, False)
        previous, self._user_constants = self._user_constants, handles
        _take_handles(previous)  # the library now reads the new handles

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        if len(inputs) != self.num_inputs:
            raise RtfuseError(f"the package takes {self.num_inputs} inputs, got {len(inputs)}")
        ins = (_Handle * len(inputs))(*_new_handles(list(inputs)))  # the run takes ownership of these
        outs = (_Handle * self.num_outputs)()
        self._call("Run", self._container, ins, len(inputs), outs, self.num_outputs, None, None)
        return _take_handles(list(outs))

    def close(self) -> None:
        if self._container:
            self._call("Delete", self._container)
            self._container = _Handle()
            _take_handles(self._user_constants)
            self._user_constants = []

    def __del__(self) -> None:
        if getattr(self, "_container", None):
            self.close()


class PackageLoaderModel:
    """The same interface over torch's package loader, for GPU packages: a CUDA run only queues
    kernels, so the GIL it keeps is held briefly."""

    def __init__(self, package: str | Path):
        self._runner = torch._inductor.aoti_load_package(str(package))

    def constant_fqns(self) -> list[str]:
        return self._runner.get_constant_fqns()

    def use_constants(self, tensors: dict[str, torch.Tensor]) -> None:
        self._runner.load_constants({n: t.detach() for n, t in tensors.items()}, check_full_update=False, user_managed=True)

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        out = self._runner(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]


def load_aoti_model(package: str | Path, device: str) -> AOTIModel | PackageLoaderModel:
    """CPU packages through the C interface (GIL released while they run), others through torch."""
    if torch.device(device).type != "cpu":
        return PackageLoaderModel(package)
    try:
        return AOTIModel(package)
    except MissingInterface as exc:
        log.warning("%s; running it through torch's loader, which holds the GIL while it runs", exc)
        return PackageLoaderModel(package)
