// The page around the engine (ddim_web.js, built from web/src/lib.rs by tools/web/build.sh).
//
// Settings come from the form, filled first from the query string: steps, eta, spacing, seed, batch, clip,
// preview and timings (0 or 1), model=URL (default: default.safetensors beside the page), autorun=1; and max_binding=BYTES,
// which opens the device as if it allowed storage bindings of at most that size (batches are then split).
// When a run ends, window.ddimResult = {shape, data, kernels, msPerStep, stepMs, roof, adapter} and the title is
// "ddim: done"; on failure the title is "ddim: error: <message>" and the page shows the message.

import init, { Engine, gridColumns, npy, pngGrid } from "./ddim_web.js";

const $ = (id) => document.getElementById(id);
const form = $("controls");
const query = new URLSearchParams(location.search);
const SETTINGS = ["steps", "eta", "spacing", "seed", "batch", "clip"];

let engine = null;
let running = false;

function status(text) {
  $("status").textContent = text;
}

function fail(error) {
  const message = String(error && error.message ? error.message : error).split("\n")[0];
  $("error").textContent = message;
  $("error").hidden = false;
  status("Stopped.");
  document.title = `ddim: error: ${message}`;
  running = false;
  $("run").disabled = engine === null;
}

// What to enable where a browser has no WebGPU.
function noWebGpu() {
  if (!window.isSecureContext) {
    return "WebGPU needs a secure context: open the page over https or from localhost / 127.0.0.1.";
  }
  const ua = navigator.userAgent;
  let advice;
  if (/Firefox\//.test(ua)) {
    advice = "Firefox ships WebGPU on Windows from version 141; elsewhere set dom.webgpu.enabled to true in about:config (Nightly).";
  } else if (/Edg\//.test(ua) || /Chrome\//.test(ua)) {
    advice = "Chrome and Edge ship WebGPU from version 113 on Windows, macOS and ChromeOS; on Linux start them with --enable-unsafe-webgpu --enable-features=Vulkan, or enable chrome://flags/#enable-unsafe-webgpu. Check chrome://gpu for a blocklisted GPU.";
  } else if (/Safari\//.test(ua)) {
    advice = "Safari ships WebGPU from Safari 26 (macOS, iOS and iPadOS 26); earlier, enable it under Develop > Feature Flags > WebGPU.";
  } else {
    advice = "Use a browser with WebGPU: Chrome or Edge 113+, Safari 26+, or Firefox 141+ on Windows.";
  }
  return `This browser offers no WebGPU (navigator.gpu is missing). ${advice}`;
}

function settings() {
  const data = new FormData(form);
  const s = {};
  for (const k of SETTINGS) s[k] = String(data.get(k) ?? "");
  s.preview = data.get("preview") !== null;
  s.timings = data.get("timings") !== null;
  return s;
}

function fillFromQuery() {
  for (const k of SETTINGS) {
    if (query.has(k)) form.elements[k].value = query.get(k);
  }
  for (const k of ["preview", "timings"]) {
    if (query.has(k)) form.elements[k].checked = query.get(k) !== "0";
  }
}

function showModel(opened, name) {
  engine = opened;
  $("model-name").textContent = `${name}: ${engine.summary()}`;
  $("adapter").textContent = `on ${engine.adapter()}`;
  $("run").disabled = false;
  status(`Ready: ${name}.`);
}

async function loadModel(bytes, name) {
  engine = null;
  $("run").disabled = true;
  status(`Loading ${name} onto the GPU…`);
  const cap = query.get("max_binding");
  showModel(await Engine.open(bytes, name, cap === null ? undefined : Number(cap)), name);
}

async function fetchModel(url) {
  status(`Fetching ${url}…`);
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`could not fetch the model ${url}: ${e.message}`);
  }
  if (!response.ok) throw new Error(`could not fetch the model ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

// Draws images [N, C, H, W] (values in [-1, 1]) into the canvas's grid of `total` cells from cell `first`.
function draw(canvas, data, [n, c, h, w], first, total) {
  const cols = gridColumns(total);
  const rows = Math.ceil(total / cols);
  if (canvas.width !== cols * w || canvas.height !== rows * h) {
    canvas.width = cols * w;
    canvas.height = rows * h;
  }
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(w, h);
  const byte = (v) => Math.round((Math.min(1, Math.max(-1, v)) + 1) * 127.5);
  for (let k = 0; k < n; k++) {
    const base = k * c * h * w;
    for (let p = 0; p < h * w; p++) {
      for (let ch = 0; ch < 3; ch++) {
        pixels.data[4 * p + ch] = byte(data[base + (c === 3 ? ch : 0) * h * w + p]);
      }
      pixels.data[4 * p + 3] = 255;
    }
    const cell = first + k;
    ctx.putImageData(pixels, (cell % cols) * w, Math.floor(cell / cols) * h);
  }
}

function link(id, bytes, type) {
  const a = $(id);
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([bytes], { type }));
  a.hidden = false;
  return a.href;
}

function showTiming(result, msPerStep, asked) {
  const body = $("kernels");
  body.replaceChildren();
  const wall = `${msPerStep.toFixed(1)} ms of wall time per step.`;
  if (!result.timestamps) {
    $("timing-summary").textContent = asked
      ? `${wall} This adapter offers no GPU timestamps (timestamp-query), so there is no per-kernel table.`
      : `${wall} Kernels untimed.`;
    $("timing").hidden = false;
    return;
  }
  const fmt = (v, d) => Number(v).toFixed(d);
  for (const k of result.kernels) {
    const tr = document.createElement("tr");
    const cells = [k.label, k.calls, fmt(k.total_ms, 2), fmt(k.mean_us, 1), `${fmt(100 * k.share, 1)}%`,
      fmt(k.gflops, 2), fmt(k.gbps, 2), `${fmt(100 * k.roof_fraction, 1)}%`];
    for (const v of cells) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.append(td);
    }
    body.append(tr);
  }
  const total = result.kernels.reduce((a, k) => a + k.total_ms, 0);
  $("timing-summary").textContent =
    `${wall} GPU time ${total.toFixed(1)} ms in all, timed with one pass per dispatch where the browser has no ` +
    `timestamps inside passes. Roofline: ${result.roof.gflops.toFixed(1)} GFLOP/s FMA, ` +
    `${result.roof.gbps.toFixed(1)} GB/s copy.`;
  $("timing").hidden = false;
}

async function run() {
  if (running || engine === null) return;
  running = true;
  $("run").disabled = true;
  $("error").hidden = true;
  document.title = "ddim: running";
  const s = settings();
  const total = Number(s.batch) || 1;
  const canvas = $("x0");
  canvas.parentElement.hidden = !s.preview;
  const started = performance.now();
  let batches = 1;
  // When each step ended (performance.now()), by steps done: the wall time per step, timed or not.
  const ends = [];
  try {
    const result = await engine.sample(
      JSON.stringify(s),
      (done, all, b) => {
        batches = b;
        ends[done] = performance.now();
        status(`Sampling: step ${done} of ${all}${b > 1 ? ` (in ${b} batches)` : ""}…`);
      },
      (x) => {
        draw(canvas, x.data, x.shape, x.firstImage, total);
        $("x0-caption").textContent = `Predicted x0 after step ${x.step + 1} of ${x.steps}`;
      },
    );
    const seconds = (performance.now() - started) / 1000;
    $("grid").src = link("download-png", pngGrid(result.data, result.shape, "samples.png"), "image/png");
    link("download-npy", npy(result.data, result.shape, "samples.npy"), "application/octet-stream");
    const msPerStep = (ends.at(-1) - ends[0]) / (ends.length - 1);
    showTiming(result, msPerStep, s.timings);
    window.ddimResult = {
      shape: Array.from(result.shape),
      data: result.data,
      kernels: result.kernels,
      msPerStep,
      stepMs: Array.from(result.stepMs),
      roof: result.roof,
      adapter: engine.adapter(),
      seconds,
    };
    const split = batches > 1 ? ` in ${batches} batches` : "";
    status(`Done: ${result.shape[0]} images${split} in ${seconds.toFixed(1)} s.`);
    document.title = "ddim: done";
    running = false;
    $("run").disabled = false;
  } catch (e) {
    fail(e);
  }
}

async function main() {
  fillFromQuery();
  if (!navigator.gpu) throw new Error(noWebGpu());
  status("Loading the engine…");
  await init();
  const url = query.get("model") || "default.safetensors";
  await loadModel(await fetchModel(url), url.split("/").pop());
  document.title = "ddim: ready";
  if (query.get("autorun") === "1") await run();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});

// One file: our weights file. Several: a diffusers model's config.json, diffusion_pytorch_model.safetensors and,
// if picked, scheduler_config.json.
async function openFiles(files) {
  const cap = query.get("max_binding");
  const maxBinding = cap === null ? undefined : Number(cap);
  if (files.length === 1) {
    const file = files[0];
    return [await Engine.open(new Uint8Array(await file.arrayBuffer()), file.name, maxBinding), file.name];
  }
  const byName = (test) => files.find((f) => test(f.name));
  const config = byName((n) => n === "config.json");
  const weights = byName((n) => n.endsWith(".safetensors"));
  const scheduler = byName((n) => n === "scheduler_config.json");
  if (!config || !weights || files.length > (scheduler ? 3 : 2)) {
    throw new Error("pick our weights file, or a diffusers model's config.json and diffusion_pytorch_model.safetensors (and its scheduler_config.json)");
  }
  const engine = await Engine.openDiffusers(
    await config.text(),
    new Uint8Array(await weights.arrayBuffer()),
    weights.name,
    scheduler ? await scheduler.text() : undefined,
    maxBinding,
  );
  return [engine, `${weights.name} (diffusers)`];
}

$("file").addEventListener("change", async () => {
  const files = Array.from($("file").files);
  if (files.length === 0) return;
  $("error").hidden = true;
  engine = null;
  $("run").disabled = true;
  status("Loading the picked files onto the GPU…");
  document.title = "ddim: loading";
  try {
    const [opened, name] = await openFiles(files);
    showModel(opened, name);
    document.title = "ddim: ready";
  } catch (e) {
    fail(e);
  }
});

main().catch(fail);
