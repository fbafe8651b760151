"""`host-setup verify`'s checks of what only the Spark can confirm, as data: facts in, a
verdict out that names what breaks and the fix."""

from __future__ import annotations

from host_setup import first_run, versions
from host_setup.checks import Settings
from host_setup.hosts import Result
from known_facts import KnownFacts

S = Settings()
GIB = 2**30


def test_iscsi_tcp_missing_from_the_kernel_names_the_fix() -> None:
    assert first_run.iscsi_in_kernel(KnownFacts({first_run.ISCSI_MODULE: True}), S)
    st = first_run.iscsi_in_kernel(KnownFacts({first_run.ISCSI_MODULE: False}), S)
    assert not st
    assert "linux-modules-extra" in st.detail and "--storage local-path" in st.detail
    # with local-path storage nobody needs it
    local = Settings(storage="local-path")
    assert first_run.iscsi_in_kernel(KnownFacts({first_run.ISCSI_MODULE: False}), local)


def test_cdi_spec_for_the_gpu_is_found_in_yaml_and_json() -> None:
    parse = first_run.CDI_SPECS.parse
    yaml_spec = parse(Result((), 0, 'kind: nvidia.com/gpu\nkind: "other.com/x"\n', ""))
    assert "nvidia.com/gpu" in yaml_spec
    assert first_run.cdi_gpu_spec(KnownFacts({first_run.CDI_SPECS: yaml_spec}), S)
    st = first_run.cdi_gpu_spec(KnownFacts({first_run.CDI_SPECS: frozenset()}), S)
    assert not st and "nvidia-container-toolkit" in st.detail


def test_the_vllm_tag_is_checked_on_the_registry_before_anything_pulls_it() -> None:
    image = versions.VLLM_IMAGE
    present, registry = first_run.image_present(image), first_run.registry_status(image)
    assert registry.argv[-3:] == ("nvcr.io", "nvidia/vllm", image.rsplit(":", 1)[1])
    assert first_run.vllm_image_exists(KnownFacts({present: True}), S)
    assert first_run.vllm_image_exists(KnownFacts({present: False, registry: "200"}), S)
    missing = first_run.vllm_image_exists(KnownFacts({present: False, registry: "404"}), S)
    assert not missing and "does not exist" in missing.detail
    assert "26.05-py3" in missing.detail and "VLLM_IMAGE" in missing.detail
    offline = first_run.vllm_image_exists(KnownFacts({present: False, registry: ""}), S)
    assert not offline and "could not ask" in offline.detail


def ps_output(current: float, limit: float | None, *models: tuple[str, str]) -> str:
    rows = "".join(f"{name}    abc123    {size}    100% GPU    65536    29 minutes from now\n"
                   for name, size in models)  # fmt: skip
    limit_text = "max" if limit is None else str(int(limit * GIB))
    return (
        f"{int(current * GIB)}\n{limit_text}\n"
        "NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL\n" + rows
    )


def memory(large: str | None, small: str | None = None) -> KnownFacts:
    parse = first_run.parse_server_memory
    return KnownFacts(
        {
            first_run.server_memory("ollama-large"): large and parse(Result((), 0, large, "")),
            first_run.server_memory("ollama-small"): small and parse(Result((), 0, small, "")),
        }
    )


def test_gpu_memory_in_pod_limits_is_measured_once_a_model_is_loaded() -> None:
    # nothing deployed or loaded: said so, not failed
    st = first_run.gpu_memory_accounting(memory(None), S)
    assert st and "not measured" in st.detail
    st = first_run.gpu_memory_accounting(memory(ps_output(0.3, 60)), S)
    assert st and "not measured" in st.detail
    # the model's 51 GB show in the pod's cgroup: limits bound GPU memory here
    counted = ps_output(49.0, 60, ("qwen3-coder-next:q4_K_M", "51 GB"))
    st = first_run.gpu_memory_accounting(memory(counted), S)
    assert st and "counts against the pod's limit" in st.detail
    # ... and a model that nearly fills its limit will be OOM-killed on the next load
    tight = ps_output(49.0, 48.0, ("qwen3-coder-next:q4_K_M", "51 GB"))
    st = first_run.gpu_memory_accounting(memory(tight), S)
    assert not st and "memory_limit" in st.detail
    # the cgroup holds little while the model is loaded: only the servers' settings bound it
    uncounted = ps_output(1.2, 60, ("qwen3-coder-next:q4_K_M", "51 GB"))
    st = first_run.gpu_memory_accounting(memory(uncounted), S)
    assert st and "does not count" in st.detail


def test_a_server_holding_more_models_than_the_budget_counts_fails() -> None:
    both = ps_output(70.0, None, ("qwen3-coder-next:q4_K_M", "51 GB"), ("deepseek-r1:32b", "28 GB"))
    st = first_run.gpu_memory_accounting(memory(both), S)
    assert not st and "OLLAMA_MAX_LOADED_MODELS" in st.detail
