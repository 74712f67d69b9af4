"""The `vqvid` command: one entry point, one module per subcommand.

Each subcommand lives in `vqvid.commands.<name>` and exposes `main(argv) -> int`, which tests call directly.
Modules are imported only when their subcommand runs, so `vqvid --help` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

# subcommand -> (module in vqvid.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "decode a video source once into a store of fixed-size clips"),
    "train": ("train", "train the VQ-VAE (`train vqvae`) or a prior (`train prior`)"),
    "reconstruct": ("reconstruct", "encode and decode a video; write input | reconstruction as GIF/MP4"),
    "extract": ("extract", "encode every clip of a source into a code store"),
    "export": ("export", "write a model folder (safetensors + JSON) from checkpoints"),
    "predict": ("predict", "sample future frames from context frames"),
    "compress": ("compress", "entropy-code a video into a .vqv file"),
    "decompress": ("decompress", "decode a .vqv file into a video"),
    "info": ("info", "print the header and rate of a .vqv file, or what a model folder holds"),
    "rd": ("rd", "rate-distortion of vqvid against x264/x265"),
    "demo": ("demo", "the whole pipeline on synthetic data, CPU-sized"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: vqvid <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `vqvid <command> --help` for the options of one command."]
    return "\n".join(lines)


def _show_own_warnings_as_one_line(command: str) -> None:
    """A warning of vqvid's own categories (`DataWarning`: a skipped file, a short video) reads `vqvid <command>:
    warning: ...` on one line, without the source line that raised it, wherever it was raised from (a loader
    worker's fetch, say); other libraries' warnings keep Python's format."""
    import warnings

    python_format = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.split(".")[0] == "vqvid":  # by category: no import of vqvid.data here
            return f"vqvid {command}: warning: {message}\n"
        return python_format(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = f"vqvid {argv[0]}" if argv and argv[0] in COMMANDS else "vqvid"
    try:
        code = _dispatch(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of our output went away (`vqvid info A.vqv | head -1`): not an error of ours to report.
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: every output is written atomically (`vqvid.files`), so nothing half-written is left to report.
        # 130 = 128 + SIGINT, what a shell reports for a command that the signal stopped.
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as error:
        # Out of memory: Python's or numpy's MemoryError, torch's CPU allocator (a RuntimeError saying so) or an
        # accelerator's (torch.cuda.OutOfMemoryError, a RuntimeError): one line saying so; any other
        # RuntimeError is a defect and keeps its traceback
        if not _out_of_memory(error):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no memory left"
        print(f"{prog}: out of memory ({reason}); smaller batches, clips, --frames or --samples need less",
              file=sys.stderr)
        return 1
    except OSError as error:
        # What the system refused (an output that cannot be written, a full disk) where a command did not report
        # it itself: one line, as for the errors the commands report
        print(f"{prog}: {error}", file=sys.stderr)
        return 1


# What torch's allocators say when they find no memory (CPU: "DefaultCPUAllocator: can't allocate memory")
OUT_OF_MEMORY = ("can't allocate memory", "not enough memory", "out of memory")


def _out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")
    cuda_oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", MemoryError)
    return isinstance(error, (MemoryError, cuda_oom)) or any(words in str(error) for words in OUT_OF_MEMORY)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from vqvid import __version__

        print(f"vqvid {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vqvid: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    _show_own_warnings_as_one_line(name)
    module = importlib.import_module(f"vqvid.commands.{COMMANDS[name][0]}")
    return int(module.main(rest) or 0)
