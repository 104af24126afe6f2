import importlib, time, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
mods = ["torch", "vllm", "verl.trainer.main_ppo", "ray", "transformers", "peft", "flashinfer", "triton",
        "tensordict", "megatron.core", "megatron.bridge", "modelopt.torch", "transformer_engine",
        "transformer_engine.pytorch", "flash_attn", "torchcodec", "cv2", "suite.run.incell"]
for m in mods:
    t = time.monotonic()
    try:
        importlib.import_module(m)
        res = "ok"
    except BaseException as e:
        res = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    print(f"{m:28s} {time.monotonic() - t:6.1f}s  {res}", flush=True)
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cuda available", torch.cuda.is_available())
