"""What the CPU can do natively, read from its flags (Linux /proc/cpuinfo)."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")


class CpuFeatures(BaseModel):
    """The instruction-set extensions that decide which precision pays on this CPU."""

    model: str = Field("unknown", description="the CPU's model name")
    flags: frozenset[str] = frozenset()

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix products in hardware (AVX-512 BF16 or AMX): bf16 then runs faster than fp32."""
        return any(flag in self.flags for flag in BF16_FLAGS)

    @property
    def native_int8(self) -> bool:
        """int8 dot products in hardware (VNNI or AMX)."""
        return any(flag in self.flags for flag in INT8_FLAGS)

    @property
    def amx(self) -> bool:
        return any(flag in self.flags for flag in AMX_FLAGS)

    def summary(self) -> str:
        """One line for results and logs: the model name and the extensions that matter."""
        wanted = ("avx2", "avx512f", *INT8_FLAGS, *BF16_FLAGS)
        present = [flag for flag in wanted if flag in self.flags]
        return f"{self.model} ({', '.join(present) or 'none of avx2/avx512/vnni/bf16/amx'})"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The first processor's model name and flags from /proc/cpuinfo's text."""
    model, flags = "unknown", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuFeatures(model=model, flags=flags)


@lru_cache(maxsize=1)
def this_cpu() -> CpuFeatures:
    """This machine's CPU; no flags where /proc/cpuinfo cannot be read (then fp32 is chosen)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8"))
    except OSError:
        return CpuFeatures(model=platform.processor() or "unknown")
