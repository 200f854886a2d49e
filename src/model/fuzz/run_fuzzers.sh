#!/usr/bin/env bash
# Builds the model parsers' libFuzzer targets with clang++-14 (-fsanitize=fuzzer,address,undefined)
# in their own directory and runs each for a bounded time. Used by the CTest test model_fuzz.
# Usage: run_fuzzers.sh SOURCE_DIR WORK_DIR [SECONDS_PER_TARGET]
# Exit 77 (CTest SKIP) when clang++-14 is absent.
set -euo pipefail
src=$1
work=$2
seconds=${3:-20}
clang=$(command -v clang++-14 || true)
if [[ -z "$clang" ]]; then
  echo "SKIP: clang++-14 not found; libFuzzer targets not built"
  exit 77
fi
mkdir -p "$work"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$src/include" -I"$src/src")
lib_sources=("$src"/src/common/{status,check,logging}.cc
             "$src"/src/model/{mapped_file,model_config,safetensors,gguf,gguf_model,weights,linear_weight,quantized_weights,quantization_config,rope}.cc)
# Build the shared parser code once as objects, then each target.
objs=()
for s in "${lib_sources[@]}"; do
  o="$work/$(basename "${s%.cc}").o"
  if [[ ! -f "$o" || "$s" -nt "$o" ]]; then
    "$clang" "${flags[@]/-fsanitize=fuzzer,address,undefined/-fsanitize=fuzzer-no-link,address,undefined}" -c "$s" -o "$o"
  fi
  objs+=("$o")
done
status=0
for target in safetensors gguf config; do
  bin="$work/${target}_fuzzer"
  "$clang" "${flags[@]}" "$src/src/model/fuzz/${target}_fuzzer.cc" "${objs[@]}" -o "$bin"
  corpus="$work/corpus_$target"
  mkdir -p "$corpus"
  # Seeds: a minimal valid input of each format.
  case $target in
    safetensors) printf '\x3c\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}        \x00\x00\x80\x3f' > "$corpus/seed" ;;
    gguf) printf 'GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x14\x00\x00\x00\x00\x00\x00\x00general.architecture\x08\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00llama' > "$corpus/seed" ;;
    config) printf '{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4.0}}' > "$corpus/seed" ;;
  esac
  echo "== fuzzing $target for ${seconds}s"
  # New units go to the work corpus; src/model/fuzz/corpus/<target> holds committed seeds and
  # regression inputs (each a crash the fuzzer once found), replayed on every run.
  if ! "$bin" -seed="${KILN_FUZZ_SEED:-1}" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$work/${target}_" "$corpus" "$src/src/model/fuzz/corpus/$target" \
       > "$work/${target}.log" 2>&1; then
    echo "FAILED: $target fuzzer found a crash; see $work/${target}.log"
    tail -40 "$work/${target}.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$work/${target}.log" | tail -2 || true
  fi
done
exit $status
