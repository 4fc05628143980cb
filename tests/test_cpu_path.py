"""One policy for llama.cpp's extra CPU buffer types, applied to every model load."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.engine.cpu_path import CpuFeatures, choose_cpu_path
from agent.engine.engine import Engine
from agent.engine.model import Model
from agent.settings import AgentSettings
from paddler.protocol import CpuPath, CpuRepack, GenerationRequest, SamplingParams
from paddler.settings import SettingsError
from tests.tiny_model import build_tiny_gguf

# /proc/cpuinfo as three kinds of machine print it (first processor, trimmed)
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16 \
amx_bf16 avx512_fp16 amx_tile amx_int8
"""
EPYC = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve
"""


def test_features_are_read_from_the_flags_line() -> None:
    spr = CpuFeatures.parse(SAPPHIRE_RAPIDS)
    assert spr.has_amx
    assert spr.reported == (
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    )
    epyc = CpuFeatures.parse(EPYC)
    assert not epyc.has_amx
    assert epyc.reported == ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")
    graviton = CpuFeatures.parse(GRAVITON)
    assert not graviton.has_amx
    assert graviton.reported == ()
    assert "asimd" in graviton.flags
    assert CpuFeatures.parse("") == CpuFeatures(frozenset())


@pytest.mark.parametrize(
    ("cpuinfo", "setting", "extra_buffers", "summary"),
    [
        (SAPPHIRE_RAPIDS, "auto", False, "repack off (amx)"),
        (SAPPHIRE_RAPIDS, "on", True, "repack on (setting)"),
        (SAPPHIRE_RAPIDS, "off", False, "repack off (setting)"),
        (EPYC, "auto", True, "repack on (no amx)"),
        (EPYC, "off", False, "repack off (setting)"),
        (GRAVITON, "auto", True, "repack on (no amx)"),
    ],
)
def test_auto_turns_extra_buffer_types_off_only_on_amx(
    cpuinfo: str, setting: CpuRepack, extra_buffers: bool, summary: str
) -> None:
    path = choose_cpu_path(setting, CpuFeatures.parse(cpuinfo))
    assert path.extra_buffers is extra_buffers
    assert path.summary == summary
    assert path.cpu_repack == setting


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_repack must be one of auto, on, off"):
        choose_cpu_path("maybe")  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="--cpu-repack must be one of auto, on, off"):
        AgentSettings(cpu_repack="sometimes")  # type: ignore[arg-type]


def test_this_machine_is_read_from_proc_cpuinfo() -> None:
    text = Path("/proc/cpuinfo").read_text()
    assert CpuFeatures.of_this_machine() == CpuFeatures.parse(text)
    path = choose_cpu_path("auto")
    assert path.extra_buffers is not CpuFeatures.parse(text).has_amx


@pytest.fixture(scope="module")
def q4_0_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with Q4_0 matrices: the type llama.cpp repacks on AVX2 CPUs."""
    path = tmp_path_factory.mktemp("q4_0") / "tiny-q4_0.gguf"
    return build_tiny_gguf(path, quantization="q4_0")


def test_the_setting_reaches_llama_cpp(q4_0_model: Path) -> None:
    """``on`` lets llama.cpp repack Q4_0 weights on an AVX2 CPU, ``off`` keeps them as
    loaded, and the model says which buffer types its weights got."""
    buffers: dict[str, tuple[str, ...]] = {}
    for setting in ("on", "off"):
        model = Model.load(q4_0_model, cpu_repack=setting)
        try:
            assert model.cpu_path is not None
            assert model.cpu_path.extra_buffers is (setting == "on")
            buffers[setting] = model.cpu_path.model_buffers
        finally:
            model.close()
    assert buffers["off"]
    assert not any("REPACK" in name or name == "AMX" for name in buffers["off"])
    extra = set(buffers["on"]) - set(buffers["off"])
    if "avx2" in CpuFeatures.of_this_machine().flags:
        assert extra & {"CPU_REPACK", "AMX"}, buffers
    else:  # llama.cpp has no repacked layout for this CPU: the switch changes nothing
        assert not extra


async def test_the_engine_loads_through_the_policy_and_generates(q4_0_model: Path) -> None:
    """Repacked or not, the engine serves; its CPU path names the setting and the buffers."""
    outputs: dict[str, int] = {}
    for setting in ("on", "off"):
        engine = Engine(q4_0_model, slots=1, context_size=128, threads=1, cpu_repack=setting)
        before = engine.cpu_path
        assert before.model_buffers == ()
        await engine.load()
        try:
            after = engine.cpu_path
            assert after.cpu_repack == setting
            assert after.model_buffers
            assert f"weights in {after.model_buffers[0]}" in after.summary
            request = GenerationRequest(
                kind="completion",
                prompt="hello world",
                sampling=SamplingParams(temperature=0, max_tokens=16),
            )
            result = await engine.generate(request, lambda _: None, threading.Event())
            outputs[setting] = result.usage.completion_tokens
        finally:
            engine.close()
    assert outputs == {"on": 16, "off": 16}


def test_status_round_trips_the_cpu_path() -> None:
    path = choose_cpu_path("auto", CpuFeatures.parse(SAPPHIRE_RAPIDS)).model_copy(
        update={"model_buffers": ("CPU_Mapped",)}
    )
    assert CpuPath.model_validate_json(path.model_dump_json()) == path
    assert path.summary == "repack off (amx); weights in CPU_Mapped"


def test_concurrent_loads_each_see_their_own_buffers(
    q4_0_model: Path, tiny_model_path: Path
) -> None:
    """Buffer types are read from llama.cpp's load log: loads in two threads do not mix."""
    results: dict[str, tuple[str, ...]] = {}

    def load(name: str, path: Path, setting: CpuRepack) -> None:
        model = Model.load(path, cpu_repack=setting)
        assert model.cpu_path is not None
        results[name] = model.cpu_path.model_buffers
        model.close()

    threads = [
        threading.Thread(target=load, args=("q4_0", q4_0_model, "on")),
        threading.Thread(target=load, args=("f32", tiny_model_path, "on")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "CPU_REPACK" not in results["f32"]  # f32 weights are never repacked
    assert results["q4_0"]


def test_a_load_without_a_setting_takes_auto(tiny_model_path: Path) -> None:
    model = Model.load(tiny_model_path)
    try:
        assert model.cpu_path is not None
        assert model.cpu_path.cpu_repack == "auto"
        assert model.cpu_path.extra_buffers is not CpuFeatures.of_this_machine().has_amx
    finally:
        model.close()
