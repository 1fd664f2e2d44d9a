// The web page in a real browser: Debian's Chromium, headless, WebGPU on SwiftShader, driven by playwright-core
// (no browser download). Run by tools/web/test.sh, which builds the page and the CLI's reference samples:
//
//   DDIM_WEB_DIR=<built page> DDIM_WEB_REFERENCE=<cli --out-npy> DDIM_WEB_SCREENSHOT=<png> node page.test.mjs
//
// Checks: the page's samples equal the CLI's for the same settings; the timing table covers every dispatch
// that ran; batch splitting applies in the browser; a damaged file, a file that is not a model, a missing file,
// a bad setting and a browser without WebGPU each end in a clear error within seconds; a diffusers model picked
// as its config.json and safetensors samples what the CLI samples from its folder.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const dir = process.env.DDIM_WEB_DIR;
const referencePath = process.env.DDIM_WEB_REFERENCE;
const screenshot = process.env.DDIM_WEB_SCREENSHOT;
const diffusersModel = process.env.DDIM_WEB_DIFFUSERS_MODEL;
const diffusersReference = process.env.DDIM_WEB_DIFFUSERS_REFERENCE;
if (!dir || !referencePath || !screenshot || !diffusersModel || !diffusersReference) {
  console.error("set DDIM_WEB_DIR, DDIM_WEB_REFERENCE, DDIM_WEB_SCREENSHOT, DDIM_WEB_DIFFUSERS_MODEL and DDIM_WEB_DIFFUSERS_REFERENCE (tools/web/test.sh does)");
  process.exit(2);
}

// The run the CLI's reference made: tools/web/test.sh runs `ddim sample` with these settings.
const RUN = "seed=1&steps=10&batch=4&eta=0&clip=1";
const STEPS = 10;
// The page's samples against the CLI's, max |difference| over values in [-1, 1]. The two runs share the
// latents bit for bit (Philox on the CPU) and every transcendental of the noise and the timestep embedding to a
// few ulp (+ and * only); what differs is the driver (SwiftShader through Chromium's Tint against lavapipe
// through naga), the kernels each device's limits choose, hence the order of f32 sums (up to 1,728 terms, ~60
// layers, 10 steps), and exp in SiLU and softmax, which WGSL allows 3 + 2|x| ulp. Measured: 2.0e-5. The bound
// is 10x that; the builtins' sin and cos (2^-11 absolute) gave 4.5e-3.
const BOUND = 2e-4;
// Sampling on SwiftShader's WebGPU takes seconds; generous, so a slow CI host does not fail it.
const RUN_TIMEOUT_MS = 300_000;
// A file the page must refuse: refused before the GPU is asked for, so well within this.
const ERROR_TIMEOUT_MS = 10_000;

// float32 little-endian .npy (what `ddim sample --out-npy` writes): shape and values.
function parseNpy(bytes) {
  assert.equal(bytes.toString("latin1", 1, 6), "NUMPY");
  const headerLen = bytes.readUInt16LE(8);
  const header = bytes.toString("latin1", 10, 10 + headerLen);
  assert.match(header, /'descr': '<f4'/);
  assert.match(header, /'fortran_order': False/);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const start = 10 + headerLen;
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + bytes.length));
  return { shape, data };
}

const MIME = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };

async function serve() {
  const model = await readFile(join(dir, "default.safetensors"));
  const damaged = Buffer.from(model);
  // One byte in the middle of the tensor data: the checksum must catch it.
  damaged[damaged.length >> 1] ^= 0x5a;
  const extra = {
    "/damaged.safetensors": damaged,
    "/not-a-model.safetensors": Buffer.from("<html>this is a web page, not a model</html>\n"),
  };
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
    try {
      const body = extra[path] ?? (await readFile(join(dir, path === "/" ? "index.html" : path)));
      res.writeHead(200, { "content-type": MIME[extname(path)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

async function titleOf(page, timeout) {
  await page.waitForFunction(
    () => document.title === "ddim: done" || document.title.startsWith("ddim: error"),
    null,
    { timeout, polling: 200 },
  );
  return page.title();
}

async function result(page) {
  return page.evaluate(() => ({
    ...window.ddimResult,
    data: Array.from(window.ddimResult.data),
  }));
}

function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

const checks = [];
async function check(name, f) {
  const start = Date.now();
  try {
    await f();
    checks.push(`ok   ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (e) {
    checks.push(`FAIL ${name}: ${e.message}`);
  }
  console.log(checks.at(-1));
}

const { server, base } = await serve();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 1000 } });
const errors = [];
const open = async (query) => {
  const page = await context.newPage();
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/index.html?${query}`);
  return page;
};

const reference = parseNpy(await readFile(referencePath));

// Waits for the page's run to end, checks it ended well and that its samples are `want`'s within BOUND;
// returns window.ddimResult and the difference.
async function finished(page, want = reference) {
  const title = await titleOf(page, RUN_TIMEOUT_MS);
  assert.equal(title, "ddim: done", `the run ended with "${title}"`);
  const r = await result(page);
  assert.deepEqual(r.shape, want.shape);
  const diff = maxAbsDiff(r.data, want.data);
  assert.ok(diff <= BOUND, `max |diff| ${diff} > ${BOUND}`);
  return { r, diff };
}

await check("the page samples what the CLI samples, and times every dispatch", async () => {
  const page = await open(`${RUN}&autorun=1`);
  const { r, diff } = await finished(page);
  console.log(`     page (${r.adapter}) against the CLI: max |diff| ${diff.toExponential(2)} over ${r.data.length} values`);
  console.log(`     ${r.msPerStep.toFixed(1)} ms per step, every dispatch timed, x0 shown each step`);
  // Every dispatch runs once per step, so each kernel's calls are a multiple of the steps; the update, the
  // finiteness watch, the x0 preview and the UNet's kernels must all be there, each with time.
  const names = r.kernels.map((k) => k.label);
  for (const k of r.kernels) {
    assert.equal(k.calls % STEPS, 0, `${k.label}: ${k.calls} calls over ${STEPS} steps`);
    assert.ok(k.total_ms > 0, `${k.label}: no GPU time`);
  }
  for (const want of ["ddim_step", "finite_watch", "elementwise", "timestep_embedding", "linear"]) {
    assert.ok(names.some((n) => n.startsWith(want)), `no ${want} in the table: ${names.join(", ")}`);
  }
  // (The model's upsampling is read by the convolution after it, so it has no kernel of its own.)
  for (const family of ["conv2d", "group_norm", "attention", "concat"]) {
    assert.ok(names.some((n) => n.startsWith(family)), `no ${family} kernel in the table: ${names.join(", ")}`);
  }
  const rows = await page.locator("#kernels tr").count();
  assert.equal(rows, r.kernels.length, "the page's table shows every kernel");
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
});

await check("batch splitting applies in the browser: one image per batch gives the same samples", async () => {
  // The largest activation of one image takes 393,216 bytes (96 channels of 32 x 32 in the up path): a binding
  // of 500,000 bytes holds one image's, not two.
  const page = await open(`${RUN}&preview=0&max_binding=500000&autorun=1`);
  await finished(page);
  const batches = await page.locator("#status").textContent();
  assert.match(batches, /in 4 batches/, `status: ${batches}`);
  await page.close();
});

await check("a tab frozen mid-run (as browsers freeze background tabs) resumes and finishes the same", async () => {
  const page = await open(`${RUN}&autorun=1`);
  await page.waitForFunction(() => /step [3-9] of/.test(document.getElementById("status").textContent), null, {
    timeout: RUN_TIMEOUT_MS,
    polling: 50,
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  await new Promise((ok) => setTimeout(ok, 2000));
  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  await finished(page);
  await page.close();
});

await check("untimed and unwatched, the page samples the same and says the kernels are untimed", async () => {
  const page = await open(`${RUN}&preview=0&timings=0&autorun=1`);
  const { r } = await finished(page);
  assert.equal(r.kernels.length, 0);
  assert.match(await page.locator("#timing-summary").textContent(), /Kernels untimed/);
  console.log(`     ${r.msPerStep.toFixed(1)} ms per step, untimed, x0 not shown`);
  await page.close();
});

await check("a diffusers model picked as config.json + safetensors samples what the CLI samples", async () => {
  const page = await open("steps=3&batch=2&seed=1&eta=0&clip=1");
  await page.waitForFunction(() => document.title === "ddim: ready", null, { timeout: RUN_TIMEOUT_MS });
  await page.locator("#file").setInputFiles([
    join(diffusersModel, "config.json"),
    join(diffusersModel, "diffusion_pytorch_model.safetensors"),
  ]);
  await page.waitForFunction(
    () => document.title === "ddim: ready" && /\(diffusers\)/.test(document.getElementById("model-name").textContent),
    null,
    { timeout: ERROR_TIMEOUT_MS },
  );
  await page.locator("#run").click();
  const { diff } = await finished(page, parseNpy(await readFile(diffusersReference)));
  console.log(`     diffusers model: max |diff| ${diff.toExponential(2)} against the CLI`);
  await page.close();
});

for (const [name, query, pattern] of [
  ["a damaged weights file", "model=damaged.safetensors&autorun=1", /damaged\.safetensors: .*checksum/i],
  ["a file that is not a model", "model=not-a-model.safetensors&autorun=1", /not-a-model\.safetensors: /],
  ["a missing file", "model=missing.safetensors&autorun=1", /could not fetch the model missing\.safetensors: HTTP 404/],
  ["a bad setting", "steps=ten&autorun=1", /steps `ten` is not a whole number/],
]) {
  await check(`${name} is a clear error within seconds`, async () => {
    const page = await open(query);
    const title = await titleOf(page, name === "a bad setting" ? RUN_TIMEOUT_MS : ERROR_TIMEOUT_MS);
    assert.match(title, /^ddim: error: /);
    assert.match(title, pattern);
    assert.ok(await page.locator("#error").isVisible(), "the message shows on the page");
    await page.close();
  });
}

await check("no WebGPU: the page says what to enable", async () => {
  const page = await context.newPage();
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  await page.goto(`${base}/index.html?autorun=1`);
  const title = await titleOf(page, ERROR_TIMEOUT_MS);
  assert.match(title, /no WebGPU .*Chrome and Edge ship WebGPU/);
  await page.close();
});

await browser.close();
server.close();
const panics = errors.filter((e) => /panicked|RuntimeError|unreachable/.test(e));
if (panics.length) checks.push(`FAIL the engine panicked: ${panics.join(" | ")}`);
const failed = checks.filter((c) => c.startsWith("FAIL"));
console.log(`${checks.length - failed.length} of ${checks.length} browser checks passed`);
process.exit(failed.length ? 1 : 0);
