"""The CPU's flags as /proc/cpuinfo lists them, for the benchmark drivers."""


def cpu_flags():
    """The flags of the first processor (empty where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16():
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


BF16_FLAGS = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
