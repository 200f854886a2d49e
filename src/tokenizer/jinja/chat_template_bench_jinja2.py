"""Reference for chat_template_bench: renders the same 10-turn chat with jinja2 configured as HF
transformers does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols) and
prints CPU and wall time per render. Usage: python3 chat_template_bench_jinja2.py [SHARED_DIR]"""
import sys
import json, time
from jinja2.sandbox import ImmutableSandboxedEnvironment
import jinja2.ext
shared = sys.argv[1] if len(sys.argv) > 1 else '../shared'
for model in ['qwen2.5', 'qwen3']:
    t = json.load(open(f'{shared}/tokenizers/{model}/tokenizer_config.json'))['chat_template']
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    e.filters['tojson'] = lambda x, **k: json.dumps(x, ensure_ascii=False)
    tmpl = e.from_string(t)
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(10):
        msgs.append({"role": "user", "content": f"Question {i}: explain how a paged KV cache works, and why prefix caching of full blocks helps chat workloads with long system prompts."})
        msgs.append({"role": "assistant", "content": f"Answer {i}: the cache is split into fixed-size blocks; requests map logical blocks to physical ones, so shared prefixes reuse blocks."})
    n = 2000
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n): out = tmpl.render(messages=msgs, add_generation_prompt=True, tools=None, bos_token="", eos_token="<|im_end|>")
    c1, w1 = time.process_time(), time.perf_counter()
    print(f"{model}: python jinja2 {jinja2.__version__} render: cpu {(c1-c0)/n*1e6:.1f} us, wall {(w1-w0)/n*1e6:.1f} us, {len(out.encode())} bytes")
