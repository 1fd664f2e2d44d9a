//! ddim-wgpu in a web page: the engine on the browser's WebGPU, exported to JavaScript with wasm-bindgen.
//!
//! A thin front end, like the CLI: it parses the page's settings, calls `pipeline::Pipeline`, and hands back
//! samples, step-by-step predictions of x0 and the per-kernel GPU timing table. `web/index.html` is the page;
//! `tools/web/build.sh` builds both into a folder any static file server can serve.
//!
//! The samples are the CLI's: latents and step noise are Philox numbers keyed by (seed, image index, step),
//! computed the same way here as natively, so a page and `ddim sample` with the same settings make the same
//! images up to floating-point rounding.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;

use ddim_wgpu::diffusion::timesteps::Spacing;
use ddim_wgpu::gpu::profiler::kernel_table;
use ddim_wgpu::gpu::roofline::{self, Roof};
use ddim_wgpu::gpu::{DeviceOptions, Gpu, describe};
use ddim_wgpu::io::{grid_columns, npy_bytes, png_grid_bytes};
use ddim_wgpu::model::convert::from_diffusers_parts;
use ddim_wgpu::model::weights::Weights;
use ddim_wgpu::pipeline::{Pipeline, SampleRequest, StepX0, Watch};
use js_sys::{Array, Float32Array, Function, JSON, Object, Promise, Reflect};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Sends a panic's message to the console: the page reports the failed call itself.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("ddim-web panicked: {info}"))));
}

/// A JavaScript error carrying the message of a library error (already one printable line).
fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The page's settings, as the query string and the form give them: strings, parsed here so that every bad
/// value gets the same kind of one-line error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    steps: String,
    eta: String,
    spacing: String,
    seed: String,
    batch: String,
    /// Clip x0 to [-clip, clip]; `off`: no clipping; empty: the model's default.
    clip: String,
    /// Watch each step's predicted x0.
    preview: bool,
    /// Time every dispatch (where the adapter offers timestamps).
    timings: bool,
}

fn parse<T: std::str::FromStr>(what: &str, s: &str, expected: &str) -> Result<T, JsError> {
    s.trim().parse().map_err(|_| JsError::new(&format!("{what} `{s}` is not {expected}")))
}

/// A model on the browser's GPU.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<Inner>,
}

struct Inner {
    pipeline: Pipeline,
    /// The roofline, measured once, at the first timed run.
    roof: RefCell<Option<Roof>>,
    /// A run is going on (the page runs one at a time).
    busy: Cell<bool>,
}

#[wasm_bindgen]
impl Engine {
    /// Loads `model` (our weights file's bytes; `name` names it in errors) onto the browser's WebGPU adapter.
    /// The file is checked before the GPU is asked for, so a file that is not a model fails at once.
    /// `max_binding` caps the storage binding size (bytes), as a device with lower limits would: the engine
    /// then splits batches to fit.
    pub async fn open(
        model: Vec<u8>,
        name: String,
        max_binding: Option<f64>,
    ) -> Result<Engine, JsError> {
        let weights = Weights::from_bytes(&model).map_err(|e| js_error(format!("{name}: {e}")))?;
        Engine::on_gpu(&weights, max_binding).await
    }

    /// Loads a diffusers `UNet2DModel` from its files' contents: `config` (`config.json`), `weights`
    /// (`diffusion_pytorch_model.safetensors`, named `name`) and, if given, `scheduler`
    /// (`scheduler_config.json`). As [`Engine::open`] otherwise.
    #[wasm_bindgen(js_name = openDiffusers)]
    pub async fn open_diffusers(
        config: String,
        weights: Vec<u8>,
        name: String,
        scheduler: Option<String>,
        max_binding: Option<f64>,
    ) -> Result<Engine, JsError> {
        let scheduler = scheduler.as_deref().map(|text| (text, "scheduler_config.json"));
        let weights = from_diffusers_parts(&config, &weights, &name, scheduler)
            .map_err(|e| js_error(format!("{name}: {e}")))?;
        Engine::on_gpu(&weights, max_binding).await
    }

    async fn on_gpu(weights: &Weights, max_binding: Option<f64>) -> Result<Engine, JsError> {
        let mut options = DeviceOptions::from_env().map_err(js_error)?;
        options.max_binding = match max_binding {
            Some(b) if b.fract() == 0.0 && (4.0..=u32::MAX as f64).contains(&b) => Some(b as u64),
            Some(b) => {
                return Err(JsError::new(&format!("max_binding {b}: need whole bytes, 4 or more")));
            }
            None => None,
        };
        let gpu = Gpu::new(&options).await.map_err(js_error)?;
        let pipeline = Pipeline::new(gpu, weights).map_err(js_error)?;
        Ok(Engine {
            inner: Rc::new(Inner { pipeline, roof: RefCell::new(None), busy: Cell::new(false) }),
        })
    }

    /// The adapter: `name (backend, type, driver)`.
    pub fn adapter(&self) -> String {
        describe(&self.inner.pipeline.gpu().info())
    }

    /// The model's parameter count and image shape, in words.
    pub fn summary(&self) -> String {
        let c = self.inner.pipeline.config();
        format!(
            "{} channel(s), {}x{} pixels, {} resolution levels",
            c.in_channels,
            c.sample_size,
            c.sample_size,
            c.block_out_channels.len()
        )
    }

    /// Samples with `settings` (a JSON object of strings: steps, eta, spacing, seed, batch, clip; and the
    /// booleans preview and timings). Calls `on_progress(done, total, batches)` after every step and, with preview, `on_x0({step, steps,
    /// firstImage, shape, data})` with that step's predicted x0. Resolves to `{shape, data, kernels, stepMs,
    /// roof, timestamps}`: the samples (`Float32Array`, NCHW, unclamped), the per-kernel table and each step's
    /// wall time (empty unless timed).
    pub fn sample(&self, settings: String, on_progress: Function, on_x0: Function) -> Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if inner.busy.replace(true) {
                return Err(JsError::new("a run is already going on").into());
            }
            let result = run(&inner, &settings, &on_progress, &on_x0).await;
            inner.busy.set(false);
            result.map_err(JsValue::from)
        })
    }
}

async fn run(
    inner: &Inner,
    settings: &str,
    on_progress: &Function,
    on_x0: &Function,
) -> Result<JsValue, JsError> {
    let s: Settings =
        serde_json::from_str(settings).map_err(|e| js_error(format!("settings: {e}")))?;
    let pipeline = &inner.pipeline;
    let mut scheduler = pipeline.default_settings();
    scheduler.steps = parse("steps", &s.steps, "a whole number")?;
    scheduler.eta = parse("eta", &s.eta, "a number")?;
    // An empty spacing or clip keeps the model's own default.
    if !s.spacing.trim().is_empty() {
        scheduler.spacing = s.spacing.trim().parse::<Spacing>().map_err(js_error)?;
    }
    scheduler.clip = match s.clip.trim() {
        "" => scheduler.clip,
        "off" => None,
        r => match r.parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => {
                scheduler.threshold = None;
                Some(v)
            }
            _ => {
                return Err(JsError::new(&format!("clip `{r}` is not a positive number or `off`")));
            }
        },
    };
    let seed: u64 = parse("seed", &s.seed, "a whole number from 0 to 2^64 - 1")?;
    let batch: usize = parse("batch", &s.batch, "a whole number")?;
    ddim_wgpu::pipeline::check_settings(&scheduler).map_err(js_error)?;
    let timed = s.timings && pipeline.gpu().features().contains(wgpu::Features::TIMESTAMP_QUERY);

    let request = SampleRequest::new(scheduler, batch, seed);
    let mut progress = |p: ddim_wgpu::pipeline::Progress| {
        let _ =
            on_progress.call3(&JsValue::NULL, &p.done.into(), &p.total.into(), &p.batches.into());
    };
    let mut x0 = |x: StepX0<'_>| {
        let event = Object::new();
        let set = |k: &str, v: &JsValue| Reflect::set(&event, &k.into(), v).map(|_| ());
        let shape: Array = x.shape.iter().map(|&d| JsValue::from(d as u32)).collect();
        let _ = set("step", &(x.step as u32).into())
            .and(set("steps", &(x.steps as u32).into()))
            .and(set("firstImage", &(x.first_image as u32).into()))
            .and(set("shape", &shape))
            .and(set("data", &Float32Array::from(x.data).into()));
        let _ = on_x0.call1(&JsValue::NULL, &event);
    };
    let watch = Watch { x0: if s.preview { Some(&mut x0) } else { None }, timings: timed };
    let watched =
        pipeline.sample_watched(&request, &mut progress, watch).await.map_err(js_error)?;

    let mut kernels = JsValue::from(Array::new());
    let mut roof_value = JsValue::NULL;
    if timed {
        let cached = *inner.roof.borrow();
        let roof = match cached {
            Some(r) => r,
            None => {
                let r = roofline::measure(pipeline.gpu()).await.map_err(js_error)?;
                *inner.roof.borrow_mut() = Some(r);
                r
            }
        };
        let rows = kernel_table(&watched.timings, &roof);
        kernels = JSON::parse(&serde_json::to_string(&rows).map_err(js_error)?)
            .map_err(|_| JsError::new("the kernel table did not serialise"))?;
        roof_value = JSON::parse(&serde_json::to_string(&roof).map_err(js_error)?)
            .map_err(|_| JsError::new("the roofline did not serialise"))?;
    }
    let images = watched.images;
    let out = Object::new();
    let set = |k: &str, v: &JsValue| {
        Reflect::set(&out, &k.into(), v)
            .map(|_| ())
            .map_err(|_| JsError::new("could not build the result"))
    };
    let shape: Array = images.shape.iter().map(|&d| JsValue::from(d as u32)).collect();
    set("shape", &shape)?;
    set("data", &Float32Array::from(images.data.as_slice()).into())?;
    set("kernels", &kernels)?;
    set("roof", &roof_value)?;
    set("timestamps", &timed.into())?;
    let step_ms: Array = watched.step_walls.iter().map(|s| JsValue::from(s * 1e3)).collect();
    set("stepMs", &step_ms)?;
    Ok(out.into())
}

fn dims(shape: &[u32]) -> Result<[usize; 4], JsError> {
    match shape {
        &[n, c, h, w] => Ok([n as usize, c as usize, h as usize, w as usize]),
        _ => Err(JsError::new(&format!("shape {shape:?}: need [N, C, H, W]"))),
    }
}

/// The images (`[N, C, H, W]`, values in [-1, 1]) as one PNG grid without empty cells, as the CLI's `--out`
/// writes it.
#[wasm_bindgen(js_name = pngGrid)]
pub fn png_grid(data: &[f32], shape: &[u32], name: &str) -> Result<Vec<u8>, JsError> {
    let dims = dims(shape)?;
    let cols = grid_columns(dims[0]);
    png_grid_bytes(Path::new(name), data, dims, cols).map_err(js_error)
}

/// Columns of a grid of `n` images with no empty cell, as the CLI and [`png_grid`] lay them out.
#[wasm_bindgen(js_name = gridColumns)]
pub fn grid_columns_js(n: u32) -> u32 {
    grid_columns(n as usize) as u32
}

/// The images as a float32 `.npy` of `shape`, as the CLI's `--out-npy` writes it.
#[wasm_bindgen]
pub fn npy(data: &[f32], shape: &[u32], name: &str) -> Result<Vec<u8>, JsError> {
    let shape: Vec<usize> = dims(shape)?.to_vec();
    npy_bytes(Path::new(name), &shape, data).map_err(js_error)
}
