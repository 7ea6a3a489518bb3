//! The YAML pipeline spec (`vitrine run SPEC`). Every struct refuses unknown fields so that a
//! typo is an error, not a silently ignored setting. Relative paths are relative to the
//! spec file. Parsing and the checks that need the file system live in `vitrine-pipeline`;
//! [`PipelineSpec::check`] holds the rules that only need the values.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A whole pipeline: where frames come from, the model, how detections become product
/// events, the catalog, and where results go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name of the pipeline, used in logs.
    pub name: String,
    /// The streams to watch (at least one).
    pub sources: Vec<SourceSpec>,
    /// The detector.
    pub model: ModelSpec,
    /// Limits and preprocessing of incoming frames.
    #[serde(default)]
    pub decode: DecodeSpec,
    /// How frames are fed to the model when it cannot keep up.
    #[serde(default)]
    pub infer: InferSpec,
    /// How detections become object tracks from frame to frame.
    #[serde(default)]
    pub tracker: TrackerSpec,
    /// When a detected product counts as on screen, and when as gone.
    #[serde(default)]
    pub debounce: DebounceSpec,
    /// Recognising the catalog's products by their pictures (README, "Matching").
    #[serde(default, rename = "match")]
    pub matching: MatchSpec,
    /// The product catalog that detector labels are matched against.
    pub catalog: CatalogSpec,
    /// Where results are written.
    #[serde(default)]
    pub sinks: SinksSpec,
    /// The HTTP server for viewers (WebSocket, viewer page, product images). Omit to run without one.
    #[serde(default)]
    pub server: Option<ServerSpec>,
    /// Timely worker threads in this process, and as many model threads (each with its own session).
    #[serde(default = "one")]
    pub workers: NonZeroUsize,
    /// Granularity of dataflow progress: frames captured within one epoch share a timestamp.
    #[serde(default = "default_epoch", with = "humantime_serde")]
    pub epoch: Duration,
}

/// A stream of frames, read in-process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// A video file or a live URL (RTMP, HLS, SRT, RTSP...) sampled through ffmpeg.
    Video(VideoSource),
    /// A folder of JPEG frames, taken in file-name order.
    Frames(FramesSource),
    /// Frames from a Kafka topic (published by `vitrine sample` or any producer), any number of streams.
    Kafka(KafkaSource),
}

impl SourceSpec {
    /// The one stream of an embedded source; none for Kafka (it carries many).
    pub fn stream_id(&self) -> Option<&str> {
        match self {
            SourceSpec::Video(v) => Some(&v.stream_id),
            SourceSpec::Frames(f) => Some(&f.stream_id),
            SourceSpec::Kafka(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers, `host:port,...` (`VITRINE_BROKERS` overrides it).
    pub brokers: String,
    /// Topic of frames: key = stream id, value = JPEG, metadata in `vitrine-*` headers.
    #[serde(default = "default_frames_topic")]
    pub topic: String,
    /// Consumer group whose committed offsets say where to resume.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Streams viewers may connect to before their first frame arrives (others open on their first frame).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Folder that frames sent by reference (`vitrine-frame-url: file://...`) may be read
    /// from, e.g. the shared volume of `vitrine sample --spill-dir`. Omit to refuse references.
    #[serde(default)]
    pub frame_refs_dir: Option<String>,
    /// Folder where `vitrine sample --hls-dir` writes each stream's live HLS (a shared
    /// volume): the server plays it to viewers. Omit for no video in the viewer page.
    #[serde(default)]
    pub hls_dir: Option<String>,
    /// Streams one worker takes at most; frames of more go to the dead-letter output (a
    /// producer making up stream ids must not grow per-stream state without end).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Frames a second of media time a stream may have at most; denser frames go to the
    /// dead-letter output (each costs a model run).
    #[serde(default = "default_max_fps")]
    pub max_fps: f64,
}

fn default_max_streams() -> usize {
    1000
}

fn default_max_fps() -> f64 {
    60.0
}

/// How fast a source delivers frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// At the stream's own speed, as a live stream arrives.
    #[default]
    Realtime,
    /// As fast as the pipeline takes them (replay, backfill, tests).
    Fast,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSource {
    /// Id of the stream: viewers connect to `/v1/streams/{stream_id}/ws`.
    pub stream_id: String,
    /// A video file path or any URL ffmpeg can read.
    pub input: String,
    /// Frames sampled per second of media time.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// `realtime` or `fast`.
    #[serde(default)]
    pub pace: Pace,
    /// Start the file again when it ends (media time keeps growing), for an endless demo.
    #[serde(default, rename = "loop")]
    pub loop_forever: bool,
    /// The ffmpeg program to run.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: String,
    /// Also cut the stream into HLS segments that the server plays to viewers
    /// (`/v1/streams/{id}/hls/live.m3u8`), from the same ffmpeg run as the frames, so the
    /// player's media time is the frames' media time.
    #[serde(default)]
    pub hls: Option<HlsSpec>,
}

/// Live HLS for viewers. Segments copy the input's video (and audio) without re-encoding,
/// so they are cut at its keyframes: send keyframes at least every `segment` (live encoders
/// send one every 1-2 s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsSpec {
    /// Target length of a segment.
    #[serde(default = "default_hls_segment", with = "humantime_serde")]
    pub segment: Duration,
    /// Segments listed in the live playlist; players start a few seconds behind its end, so
    /// it must cover more than their delay.
    #[serde(default = "default_hls_window")]
    pub window: usize,
    /// Folder for the segments; by default a temporary folder removed when vitrine exits.
    #[serde(default)]
    pub dir: Option<String>,
}

impl Default for HlsSpec {
    fn default() -> Self {
        HlsSpec { segment: default_hls_segment(), window: default_hls_window(), dir: None }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramesSource {
    /// Id of the stream.
    pub stream_id: String,
    /// Folder holding the frames (`*.jpg`, `*.jpeg`), in file-name order.
    pub dir: String,
    /// Frame rate the frames were sampled at: frame i has media time i / fps.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// `realtime` or `fast`.
    #[serde(default = "fast")]
    pub pace: Pace,
    /// With `realtime`: how long after the start the first frame comes (not in specs; `vitrine
    /// bench` sets it so that its live streams do not all deliver frames at the same instant,
    /// as independent streams do not).
    #[serde(skip)]
    pub phase: Duration,
}

/// Where ONNX Runtime runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    /// NVIDIA GPUs through CUDA (cargo feature `cuda`).
    Cuda,
    /// NVIDIA TensorRT, CUDA for what TensorRT does not take (cargo feature `tensorrt`).
    Tensorrt,
}

impl ExecutionProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::Tensorrt => "tensorrt",
        }
    }
}

/// Which decoder turns the model's outputs into detections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// Models with post-processing in the graph: outputs boxes, classes, scores and count
    /// (TFLite `Detection_PostProcess`, e.g. the default SSD MobileNetV2).
    #[default]
    SsdPostprocessed,
    /// Ultralytics YOLO (v5, v8, v11) exports: one output, `[1, 4+C, N]` (v8, v11) or
    /// `[1, N, 5+C]` (v5, with objectness); float NCHW RGB input in 0..1, letterboxed;
    /// non-maximum suppression in vitrine. Labels from the model's `names` metadata.
    Yolo,
    /// NanoDet raw heads (GFL): per stride a class-score output `[1, N, C]` and a box
    /// distribution `[1, N, 4*(R+1)]`; float NCHW BGR input normalised by ImageNet mean and
    /// std, stretched; NMS in vitrine.
    Nanodet,
    /// Models that decode in the graph into one output `[1, N, 6]`: x0, y0, x1, y1 in input
    /// pixels, score, class (CenterNet exports, Ultralytics end-to-end exports). NHWC input
    /// (float in 0..255, or uint8), stretched; NMS in vitrine for overlapping duplicates.
    Detections6,
}

impl DecoderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecoderKind::SsdPostprocessed => "ssd_postprocessed",
            DecoderKind::Yolo => "yolo",
            DecoderKind::Nanodet => "nanodet",
            DecoderKind::Detections6 => "detections6",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The ONNX model file.
    pub path: String,
    /// Label file: one `id label` per line. Default: the model's `names` metadata (Ultralytics
    /// exports), else `labels.txt` beside the model.
    #[serde(default)]
    pub labels: Option<String>,
    /// How to read the model's outputs.
    #[serde(default)]
    pub decoder: DecoderKind,
    /// The ONNX Runtime library (`libonnxruntime.so.*`). Default: `$ORT_DYLIB_PATH`, then
    /// `.vitrine/onnxruntime/` beside the spec or in the working directory (made by `scripts/setup.sh`).
    #[serde(default)]
    pub runtime_library: Option<String>,
    /// Threads ONNX Runtime may use inside one inference, per model thread (one per worker).
    #[serde(default = "one")]
    pub intra_threads: NonZeroUsize,
    /// Detections scoring below this are dropped right after inference.
    #[serde(default = "default_model_min_score")]
    pub min_score: f32,
    /// Input size (pixels, square) of a model whose input size is dynamic. Default: the
    /// model's `imgsz` metadata, else 640.
    #[serde(default)]
    pub input_size: Option<u32>,
    /// Where inference runs: `cpu`, `cuda` or `tensorrt` (the GPU ones need vitrine built with
    /// the cargo feature of that name and an ONNX Runtime library built with them).
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// The GPU to use (`cuda`, `tensorrt`).
    #[serde(default)]
    pub device_id: u32,
    /// Non-maximum suppression (decoders without it in the graph): of two boxes of one class
    /// overlapping more than this (IoU), the weaker is dropped.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeSpec {
    /// Largest accepted encoded frame, in bytes; larger frames go to the dead-letter output.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Largest accepted width or height, in pixels (guards against decompression bombs).
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    /// Cut uniform bars (letterbox/pillarbox) off the frame before resizing: the detector
    /// then sees the picture larger and scores it higher.
    #[serde(default = "yes")]
    pub crop_bars: bool,
    /// Refuse a frame whose compressed data is damaged (libjpeg-turbo's warnings as it decodes;
    /// a frame it will not decode is walked first): decoders would turn the damage into noise
    /// the model sees things in.
    #[serde(default = "yes")]
    pub check_data: bool,
    /// Decode a frame larger than the model takes at 1/2, 1/4 or 1/8 of its size (libjpeg-turbo's
    /// DCT scaling), never smaller than what the model takes of it: the pixels a full decode would
    /// give and the resize throw away cost nothing.
    #[serde(default = "yes")]
    pub at_model_scale: bool,
}

impl Default for DecodeSpec {
    fn default() -> Self {
        DecodeSpec {
            max_bytes: default_max_bytes(),
            max_side: default_max_side(),
            crop_bars: true,
            check_data: true,
            at_model_scale: true,
        }
    }
}

/// How frames are fed to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferSpec {
    /// Live streams (`pace: realtime`, or a URL): a frame that waited longer than this while a
    /// newer frame of its stream is queued is shed (counted in `vitrine_frames_shed_total`),
    /// so viewers stay current when the model falls behind; the newest frame always goes on.
    /// `null`: never shed. Streams read as fast as possible are never shed.
    #[serde(default = "default_shed_after", with = "humantime_serde::option")]
    pub shed_after: Option<Duration>,
    /// Frames in one model run, at most (micro-batching across streams). Only models with a
    /// dynamic batch dimension take several at once (YOLO exports); others run them in turn.
    #[serde(default = "one")]
    pub batch_frames: NonZeroUsize,
    /// How long a batch that is not full may wait for more frames (adds up to this latency).
    #[serde(default, with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Small products: besides the whole frame, the model also sees it cut into tiles
    /// (overlapping by `tile_overlap` of a tile), and the detections are merged by NMS.
    /// `3`: 3 x 3 tiles; `3x2`: 3 columns, 2 rows. A tiled frame costs 1 + columns x rows
    /// model runs. `1`: no tiling. The default 3x2 (tiles near the SSD's square input on a
    /// 16:9 frame), with `tile_every`, scores best on the labelled show (docs/eval.md).
    #[serde(default = "default_tiles")]
    pub tiles: TileGrid,
    /// See `tiles`.
    #[serde(default = "default_tile_overlap")]
    pub tile_overlap: f32,
    /// Small products at bounded cost: with `tiles`, tile only a frame whose picture changed
    /// since the stream's last tiled frame (a cut, a product coming in: `tile_change` of the
    /// picture), or `tile_every` frames after it; the frames between run the whole picture
    /// only, and keep what the tiles saw better where the picture stayed. `1` (or `0`): tile
    /// every frame. The defaults (50, 0.2: a cut, or 10 s at 5 frames/s) scored best of the
    /// adaptive settings with `tiles: 3x2` on the labelled show (docs/eval.md).
    #[serde(default = "default_tile_every")]
    pub tile_every: u32,
    /// With `tile_every`: the share of the picture (cells of a 16x16 grid whose brightness
    /// moved by more than `changed_level`) that must change for a frame to be tiled at once.
    #[serde(default = "default_tile_change")]
    pub tile_change: f32,
    /// Skip the model on frames that show nothing new: a frame whose picture barely differs
    /// from the stream's last frame the model saw carries that frame's detections over (the
    /// tracker keeps its tracks), up to `max_skip` frames in a row; then the model runs anyway.
    /// `0`: the model sees every frame.
    #[serde(default)]
    pub max_skip: u32,
    /// With `max_skip`: a frame is new when more than this share of its 8x8 blocks changed in
    /// brightness by more than `changed_level` since the last frame the model saw. Unset: see
    /// [`InferSpec::changed_share`].
    #[serde(default)]
    pub changed_share: Option<f32>,
    /// See `changed_share` (in levels of 0-255 brightness).
    #[serde(default = "default_changed_level")]
    pub changed_level: u8,
}

/// How `infer.tiles` cuts a frame: `columns` x `rows` tiles. Written `3` (3 x 3) or `3x2`.
/// Tiles close to the model's input in shape see objects as the model learned them: a square
/// model (the SSD's 300x300) gets near-square tiles of a 16:9 frame from `3x2`, where `3`
/// would squeeze each tile's width by 1.8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileGrid {
    pub columns: u32,
    pub rows: u32,
}

impl TileGrid {
    /// No tiles: the whole frame only.
    pub const NONE: TileGrid = TileGrid { columns: 1, rows: 1 };

    /// Tiles a tiled frame has (0 for `1` / `1x1`).
    pub fn count(&self) -> u32 {
        if *self == TileGrid::NONE {
            0
        } else {
            self.columns * self.rows
        }
    }
}

impl std::fmt::Display for TileGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.columns == self.rows {
            write!(f, "{}", self.columns)
        } else {
            write!(f, "{}x{}", self.columns, self.rows)
        }
    }
}

impl std::str::FromStr for TileGrid {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let side = |t: &str| t.trim().parse::<u32>().ok().filter(|n| *n >= 1);
        let grid = match text.split_once(['x', 'X']) {
            Some((c, r)) => side(c).zip(side(r)).map(|(columns, rows)| TileGrid { columns, rows }),
            None => side(text).map(|n| TileGrid { columns: n, rows: n }),
        };
        grid.ok_or_else(|| {
            format!("tiles are a number (3: 3 x 3) or columns x rows (3x2), each at least 1, not {text:?}")
        })
    }
}

impl Serialize for TileGrid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.columns == self.rows {
            serializer.serialize_u32(self.columns)
        } else {
            serializer.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for TileGrid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => n.to_string().parse(),
            Written::Text(t) => t.parse(),
            Written::Other(_) => {
                Err("tiles are a number (3: 3 x 3) or columns x rows (3x2), not a list or a map".into())
            }
        }
        .map_err(serde::de::Error::custom)
    }
}

impl InferSpec {
    /// The share of blocks that makes a frame new (`changed_share`, else its default). The
    /// default follows what the pass can see: tiles find products a fraction of the size the
    /// whole frame does, and one coming in changes fewer blocks. Measured with `max_skip: 10`:
    /// on the whole frame 0.03 is the largest share that keeps the sample stream's events;
    /// with 3x2 tiles 0.03 sends the football's card off 3.8 s early on the labelled show and
    /// 0.02 and 0.015 announce a product late, while 0.01 keeps every entrance and exit to the
    /// frame there and on the sample stream (docs/eval.md).
    pub fn changed_share(&self) -> f32 {
        self.changed_share.unwrap_or(if self.tiles.count() > 0 { 0.01 } else { 0.03 })
    }
}

fn default_tiles() -> TileGrid {
    TileGrid { columns: 3, rows: 2 }
}

fn default_tile_every() -> u32 {
    50
}

fn default_tile_change() -> f32 {
    0.2
}

fn default_changed_level() -> u8 {
    16
}

impl Default for InferSpec {
    fn default() -> Self {
        InferSpec {
            shed_after: default_shed_after(),
            batch_frames: one(),
            batch_wait: Duration::ZERO,
            tiles: default_tiles(),
            tile_overlap: default_tile_overlap(),
            tile_every: default_tile_every(),
            tile_change: default_tile_change(),
            max_skip: 0,
            changed_share: None,
            changed_level: default_changed_level(),
        }
    }
}

/// The multi-object tracker (ByteTrack-style: a pass with strong detections, then one with weak ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerSpec {
    /// A detection from this score continues the track it overlaps, or starts a new one.
    #[serde(default = "default_track_high_score")]
    pub high_score: f32,
    /// A detection from this score (and `model.min_score`) continues a live track it overlaps,
    /// but never starts one: a product the detector sees weakly for a moment stays on screen.
    #[serde(default = "default_track_low_score")]
    pub low_score: f32,
    /// Least box overlap (IoU) for a strong detection to continue a track.
    #[serde(default = "default_match_iou")]
    pub match_iou: f32,
    /// Least box overlap (IoU) for a weak detection to continue a track.
    #[serde(default = "default_low_match_iou")]
    pub low_match_iou: f32,
    /// A track not seen for this long (media time) ends; until then the object keeps its id
    /// when it comes back (a short occlusion).
    #[serde(default = "default_lost_after", with = "humantime_serde")]
    pub lost_after: Duration,
}

impl Default for TrackerSpec {
    fn default() -> Self {
        TrackerSpec {
            high_score: default_track_high_score(),
            low_score: default_track_low_score(),
            match_iou: default_match_iou(),
            low_match_iou: default_low_match_iou(),
            lost_after: default_lost_after(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceSpec {
    /// A detection counts as a sighting of its product from this score on. The default 0.3
    /// (every detection the model keeps) scores best on the labelled show with the default
    /// tiles (docs/eval.md).
    #[serde(default = "default_debounce_score")]
    pub min_score: f32,
    /// A product appears once it was sighted in `enter_hits` of the last `enter_window` frames.
    #[serde(default = "default_enter_hits")]
    pub enter_hits: NonZeroUsize,
    /// See `enter_hits`.
    #[serde(default = "default_enter_window")]
    pub enter_window: NonZeroUsize,
    /// A product disappears once it was not sighted for this long (media time).
    #[serde(default = "default_hold", with = "humantime_serde")]
    pub hold: Duration,
    /// After a product disappears it cannot appear again for this long (media time), so a
    /// product waved in and out of view does not flicker. `0s`: no cooldown.
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Duration,
    /// Hysteresis: once a product is on screen, a detection from this (lower) score keeps it
    /// there, so a product the detector sees less surely for a moment does not drop off. Omit: `min_score`.
    #[serde(default)]
    pub stay_min_score: Option<f32>,
    /// Per-label `min_score`, e.g. `{bottle: 0.35, cup: 0.6}`, for labels the detector scores lower or higher.
    #[serde(default)]
    pub label_min_score: std::collections::BTreeMap<String, f32>,
    /// At most this many products on screen per stream; when more qualify, the highest
    /// scores enter first and the others wait (nothing on screen is pushed off). Omit: no cap.
    #[serde(default)]
    pub max_on_screen: Option<NonZeroUsize>,
    /// A detection with more look-alikes than this in its frame (objects of about its size and
    /// shape, any label) is part of a pattern (sweets on a plate, a ball pit), not a product
    /// shown, and is no sighting. The default 4 scores best on the labelled show (docs/eval.md);
    /// raise it for shows of products in multiples (a tray of oranges). `null`: no limit.
    #[serde(default = "default_max_look_alikes")]
    pub max_look_alikes: Option<usize>,
}

/// How objects on screen are recognised as the catalog's products by their pictures: a
/// product whose catalog row has a picture gets a card only where an object of its label looks
/// like the picture (the closest of the label's pictures, close enough, ahead of the runner-up).
/// Products without a picture match on their label alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Whether pictures are matched (on by default; the thresholds' defaults were chosen on
    /// `examples/show` and are reported on `examples/market-show`, docs/eval.md). Off, every
    /// product of a detected label is shown, with or without a picture.
    #[serde(default = "default_match_enabled")]
    pub enabled: bool,
    /// The image embedder (an ONNX model, relative to the spec). Omit: vitrine's own,
    /// `models/zoo/mobilenetv2-imagenet-embedder/model.onnx`, looked for beside the spec and above.
    #[serde(default)]
    pub embedder: Option<String>,
    /// Pictures and crops are stretched to `side` x `side` pixels for the embedder.
    #[serde(default = "default_match_side")]
    pub side: u32,
    /// Least cosine similarity (0..1) of an object's running mean embedding to a product's
    /// picture, for every stream and product unless `streams` or `products` say otherwise.
    #[serde(default = "default_min_similarity")]
    pub min_similarity: f32,
    /// Least lead of the closest product over the next closest of the same label.
    #[serde(default = "default_min_margin")]
    pub min_margin: f32,
    /// The share (0..1) of colour in how alike two pictures are: the similarity is `1 - colour`
    /// times the embedder's cosine plus `colour` times how alike their hues are (the
    /// Bhattacharyya coefficient of hue histograms, greys not counted). The embedder tells kinds
    /// of things apart and hardly a green apple from a red one; the hue does. 0: the embedder alone.
    #[serde(default = "default_match_colour")]
    pub colour: f32,
    /// Per stream id: thresholds of that stream's products (each omitted one: the default above).
    #[serde(default)]
    pub streams: std::collections::BTreeMap<String, MatchThresholdsSpec>,
    /// Per SKU: thresholds of that product (over its stream's).
    #[serde(default)]
    pub products: std::collections::BTreeMap<String, MatchThresholdsSpec>,
    /// An object is embedded when it shows, then again once this much media time passed.
    #[serde(default = "default_match_every", with = "humantime_serde")]
    pub every: Duration,
    /// At most this many objects are embedded a frame (the highest scores first).
    #[serde(default = "default_match_max_crops")]
    pub max_crops: NonZeroUsize,
}

/// How close an object must look to a product's picture, for some streams or products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchThresholdsSpec {
    /// Least cosine similarity (0..1). Omit: `match.min_similarity`.
    #[serde(default)]
    pub min_similarity: Option<f32>,
    /// Least lead over the runner-up. Omit: `match.min_margin`.
    #[serde(default)]
    pub min_margin: Option<f32>,
}

fn default_match_enabled() -> bool {
    true
}

fn default_match_side() -> u32 {
    224
}

/// The highest (in steps of 0.05) that keeps every entrance of examples/show at side 224, with
/// the embedder's centre and `colour: 0.5` (the apple among the table's clutter, by its running
/// mean, scores 0.54; 0.55 loses it; docs/eval.md).
fn default_min_similarity() -> f32 {
    0.5
}

fn default_min_margin() -> f32 {
    0.03
}

/// Equal shares of the embedder and the hues: chosen before either show was scored with it, not
/// tuned (docs/eval.md).
fn default_match_colour() -> f32 {
    0.5
}

fn default_match_every() -> Duration {
    Duration::from_secs(1)
}

fn default_match_max_crops() -> NonZeroUsize {
    NonZeroUsize::new(4).expect("4 is not 0")
}

impl Default for MatchSpec {
    fn default() -> Self {
        MatchSpec {
            enabled: default_match_enabled(),
            embedder: None,
            side: default_match_side(),
            min_similarity: default_min_similarity(),
            min_margin: default_min_margin(),
            colour: default_match_colour(),
            streams: Default::default(),
            products: Default::default(),
            every: default_match_every(),
            max_crops: default_match_max_crops(),
        }
    }
}

fn default_max_look_alikes() -> Option<usize> {
    Some(4)
}

impl Default for DebounceSpec {
    fn default() -> Self {
        DebounceSpec {
            min_score: default_debounce_score(),
            enter_hits: default_enter_hits(),
            enter_window: default_enter_window(),
            hold: default_hold(),
            cooldown: Duration::ZERO,
            stay_min_score: None,
            label_min_score: Default::default(),
            max_on_screen: None,
            max_look_alikes: default_max_look_alikes(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Catalog file, by extension: JSONL (one product a line), CSV (a header row; `streams`
    /// separated by `;`) or Parquet; fields `sku`, `label`, `title`, `price`, `currency`,
    /// `image`, `url`, `in_stock`, `streams`.
    #[serde(default)]
    pub path: Option<String>,
    /// A compacted Kafka topic of products: key = sku, value = the product's JSON, no value = deleted.
    #[serde(default)]
    pub kafka: Option<CatalogTopic>,
    /// Re-read the file when it changes, so price and stock changes reach viewers.
    #[serde(default = "yes")]
    pub watch: bool,
    /// How often to look for changes when watching.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogTopic {
    /// Bootstrap brokers (`VITRINE_BROKERS` overrides it).
    pub brokers: String,
    /// The compacted topic; read whole at start, then followed.
    #[serde(default = "default_catalog_topic")]
    pub topic: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksSpec {
    /// Parquet tables for analytics (Athena, DuckDB, Spark). Omit to write none.
    #[serde(default)]
    pub parquet: Option<ParquetSpec>,
    /// Frames that failed, one JSON object a line. Omit for `dead-letter.jsonl` in the output folder of parquet, else none.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterSpec>,
    /// Kafka topics for detections, product events and dead letters. Omit to write none.
    #[serde(default)]
    pub kafka: Option<KafkaSinkSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkSpec {
    /// Bootstrap brokers (`VITRINE_BROKERS` overrides it).
    pub brokers: String,
    /// Per-frame detections (JSON, CloudEvents headers).
    #[serde(default = "default_detections_topic")]
    pub detections_topic: String,
    /// Product events (JSON, CloudEvents headers): what other services consume.
    #[serde(default = "default_events_topic")]
    pub events_topic: String,
    /// Frames that failed, with their original bytes; stage and reason in headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// The products on screen: every product event again, keyed by stream and sku, on one
    /// compacted partition. `vitrine serve` rebuilds its viewers' state from it and follows it.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Partitions of the topics `vitrine topics create` makes.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSpec {
    /// Where the tables go: a folder, or `s3://bucket/prefix` (also `gs://`, `az://`,
    /// `file://`); tables go to
    /// `{path}/{table}/dt=YYYY-MM-DD/hour=HH/`.
    pub path: String,
    /// Stage each partition's completed rows in the store (safe, not yet in a table file) at
    /// least this often: Kafka offsets are committed up to staged rows, so this is how far a
    /// restart replays.
    #[serde(default = "default_checkpoint_after", with = "humantime_serde")]
    pub checkpoint_after: Duration,
    /// Publish a partition's staged rows as table files once the oldest is this old.
    #[serde(default = "default_roll_after", with = "humantime_serde")]
    pub roll_after: Duration,
    /// Publish them once there are this many rows.
    #[serde(default = "default_roll_rows")]
    pub roll_rows: NonZeroUsize,
    /// A product must stay on screen this long (media time) for its interval to count in the
    /// `exposures` table. `0s`: every interval.
    #[serde(default = "default_min_dwell", with = "humantime_serde")]
    pub min_dwell: Duration,
    /// Rows in one row group of a file at most (engines skip row groups by their statistics).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: NonZeroUsize,
}

fn default_row_group_rows() -> NonZeroUsize {
    NonZeroUsize::new(1 << 20).expect("non-zero")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// JSONL file the failed frames are described in (appended to).
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Address to listen on (`VITRINE_LISTEN` overrides it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve the viewer page at `/`.
    #[serde(default = "yes")]
    pub viewer: bool,
    /// Messages a viewer may have queued before it is considered too slow and sent a fresh snapshot instead.
    #[serde(default = "default_viewer_queue")]
    pub viewer_queue: NonZeroUsize,
    /// How long a quiet connection waits before a `heartbeat`.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Origins whose pages may open the WebSocket (`https://shop.example`); empty: any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Name of the environment variable holding the secret of viewer tokens; when set, every
    /// viewer needs a token (`vitrine token`). Omit: no tokens.
    #[serde(default)]
    pub token_secret_env: Option<String>,
    /// Viewers connected at once, at most; more are closed with 1013 (try again later).
    #[serde(default = "default_max_viewers")]
    pub max_viewers: usize,
    /// Viewers of one stream at once, at most; none: only `max_viewers`.
    #[serde(default)]
    pub max_viewers_per_stream: Option<usize>,
    /// Viewers from one IP address at once, at most; none: no limit. Behind a load balancer or
    /// proxy, list it in `trusted_proxies`, or every viewer counts as its address.
    #[serde(default)]
    pub max_viewers_per_ip: Option<usize>,
    /// Addresses or CIDR ranges of the proxies and load balancers in front of the server: from
    /// a connection of theirs, a viewer's address is taken from `X-Forwarded-For` (the last
    /// address in it that is not a trusted proxy). Empty: the connection's own address.
    #[serde(default)]
    pub trusted_proxies: Vec<crate::address_range::AddressRange>,
}

/// A problem in a spec: where (a dotted path such as `debounce.hold`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl PipelineSpec {
    /// Rules between values that serde cannot express. Returns every problem found.
    pub fn check(&self) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(SpecProblem { path, message });
        if self.sources.is_empty() {
            problem("sources".into(), "at least one source is needed".into());
        }
        let mut seen = std::collections::HashSet::new();
        let mut kafka_sources = 0;
        for (i, source) in self.sources.iter().enumerate() {
            let ids: Vec<(String, &str)> = match source {
                SourceSpec::Kafka(k) => {
                    kafka_sources += 1;
                    if kafka_sources > 1 {
                        problem(
                            format!("sources[{i}]"),
                            "one Kafka source per pipeline: its topic carries every stream".into(),
                        );
                    }
                    if k.max_streams == 0 {
                        problem(format!("sources[{i}].max_streams"), "must be at least 1".into());
                    }
                    if !(k.max_fps > 0.0 && k.max_fps.is_finite()) {
                        problem(
                            format!("sources[{i}].max_fps"),
                            format!("must be a positive number, got {}", k.max_fps),
                        );
                    }
                    k.streams
                        .iter()
                        .enumerate()
                        .map(|(j, s)| (format!("sources[{i}].streams[{j}]"), s.as_str()))
                        .collect()
                }
                _ => vec![(format!("sources[{i}].stream_id"), source.stream_id().unwrap_or_default())],
            };
            for (path, id) in ids {
                if !valid_stream_id(id) {
                    problem(
                        path.clone(),
                        format!("`{id}` must be non-empty and use only letters, digits, `-`, `_` and `.`"),
                    );
                }
                if !seen.insert(id) {
                    problem(path, format!("stream `{id}` is listed twice"));
                }
            }
            if let SourceSpec::Video(VideoSource { hls: Some(hls), .. }) = source {
                if hls.segment < Duration::from_millis(500) || hls.segment > Duration::from_secs(10) {
                    problem(format!("sources[{i}].hls.segment"), "must be between 500ms and 10s (e.g. `1s`)".into());
                }
                if !(3..=1000).contains(&hls.window) {
                    problem(
                        format!("sources[{i}].hls.window"),
                        format!("must be between 3 and 1000 segments, got {}", hls.window),
                    );
                }
            }
            let fps = match source {
                SourceSpec::Video(v) => v.fps,
                SourceSpec::Frames(f) => f.fps,
                SourceSpec::Kafka(_) => continue,
            };
            if !(fps > 0.0 && fps <= 120.0) {
                problem(format!("sources[{i}].fps"), format!("must be above 0 and at most 120, got {fps}"));
            }
        }
        if self.catalog.path.is_none() && self.catalog.kafka.is_none() {
            problem("catalog".into(), "give a `path` (JSONL file), a `kafka` topic, or both".into());
        }
        if let Some(k) = &self.sinks.kafka {
            if k.partitions < 1 {
                problem("sinks.kafka.partitions".into(), format!("must be at least 1, got {}", k.partitions));
            }
        }
        if !(0.0..=1.0).contains(&self.model.min_score) {
            problem("model.min_score".into(), format!("must be between 0 and 1, got {}", self.model.min_score));
        }
        let d = &self.debounce;
        if !(0.0..=1.0).contains(&d.min_score) {
            problem("debounce.min_score".into(), format!("must be between 0 and 1, got {}", d.min_score));
        }
        if d.enter_hits > d.enter_window {
            problem(
                "debounce.enter_hits".into(),
                format!(
                    "{} sightings can never happen in a window of {} frames; make enter_hits at most enter_window",
                    d.enter_hits, d.enter_window
                ),
            );
        }
        if let Some(stay) = d.stay_min_score {
            if !(0.0..=d.min_score).contains(&stay) {
                problem(
                    "debounce.stay_min_score".into(),
                    format!("must be between 0 and min_score ({}), got {stay}", d.min_score),
                );
            }
        }
        let tiles = self.infer.tiles;
        if tiles.columns > 4 || tiles.rows > 4 {
            problem("infer.tiles".into(), format!("at most 4 a side (16 tiles a frame), got {tiles}"));
        }
        if !(0.0..=1.0).contains(&self.infer.tile_change) {
            problem("infer.tile_change".into(), format!("must be between 0 and 1, got {}", self.infer.tile_change));
        }
        if let Some(share) = self.infer.changed_share {
            if !(0.0..=1.0).contains(&share) {
                problem("infer.changed_share".into(), format!("must be between 0 and 1, got {share}"));
            }
        }
        if !(0.0..0.5).contains(&self.infer.tile_overlap) {
            problem(
                "infer.tile_overlap".into(),
                format!("must be at least 0 and under 0.5, got {}", self.infer.tile_overlap),
            );
        }
        let m = &self.matching;
        let thresholds = std::iter::once(("match".to_string(), Some(m.min_similarity), Some(m.min_margin)))
            .chain(m.streams.iter().map(|(id, t)| (format!("match.streams.{id}"), t.min_similarity, t.min_margin)))
            .chain(m.products.iter().map(|(sku, t)| (format!("match.products.{sku}"), t.min_similarity, t.min_margin)));
        for (at, similarity, margin) in thresholds {
            if let Some(v) = similarity.filter(|v| !(0.0..=1.0).contains(v)) {
                problem(
                    format!("{at}.min_similarity"),
                    format!("must be between 0 and 1 (a cosine similarity), got {v}"),
                );
            }
            if let Some(v) = margin.filter(|v| !(0.0..=1.0).contains(v)) {
                problem(format!("{at}.min_margin"), format!("must be between 0 and 1, got {v}"));
            }
        }
        if !(32..=640).contains(&m.side) {
            problem("match.side".into(), format!("must be 32 to 640 pixels, got {}", m.side));
        }
        if !(0.0..=1.0).contains(&m.colour) {
            problem(
                "match.colour".into(),
                format!("must be between 0 (the embedder alone) and 1 (colour alone), got {}", m.colour),
            );
        }
        let t = &self.tracker;
        if !(0.0..=1.0).contains(&t.high_score) {
            problem("tracker.high_score".into(), format!("must be between 0 and 1, got {}", t.high_score));
        }
        if !(0.0..=t.high_score).contains(&t.low_score) {
            problem(
                "tracker.low_score".into(),
                format!("must be between 0 and high_score ({}), got {}", t.high_score, t.low_score),
            );
        }
        for (name, iou) in [("match_iou", t.match_iou), ("low_match_iou", t.low_match_iou)] {
            if !(iou > 0.0 && iou <= 1.0) {
                problem(format!("tracker.{name}"), format!("must be above 0 and at most 1, got {iou}"));
            }
        }
        for (label, score) in &d.label_min_score {
            if !(0.0..=1.0).contains(score) {
                problem(format!("debounce.label_min_score.{label}"), format!("must be between 0 and 1, got {score}"));
            }
        }
        if d.hold.is_zero() {
            problem("debounce.hold".into(), "must be longer than 0 (e.g. `1500ms`)".into());
        }
        if self.epoch.is_zero() || self.epoch > Duration::from_secs(10) {
            problem("epoch".into(), "must be between 1ms and 10s (e.g. `100ms`)".into());
        }
        if self.decode.max_side < 16 {
            problem("decode.max_side".into(), "must be at least 16 pixels".into());
        }
        problems
    }
}

/// Stream ids appear in URLs, topic keys and file names.
pub fn valid_stream_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn default_catalog_topic() -> String {
    "vitrine.catalog".into()
}
fn default_frames_topic() -> String {
    "vitrine.frames".into()
}
fn default_group() -> String {
    "vitrine".into()
}
fn default_detections_topic() -> String {
    "vitrine.detections".into()
}
fn default_events_topic() -> String {
    "vitrine.product-events".into()
}
fn default_dead_letter_topic() -> String {
    "vitrine.dead-letter".into()
}
fn default_state_topic() -> String {
    "vitrine.on-screen".into()
}
fn default_partitions() -> i32 {
    4
}
fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn yes() -> bool {
    true
}
fn fast() -> Pace {
    Pace::Fast
}
fn default_epoch() -> Duration {
    Duration::from_millis(100)
}
fn default_fps() -> f64 {
    5.0
}
fn default_hls_segment() -> Duration {
    Duration::from_secs(1)
}
fn default_hls_window() -> usize {
    12
}
fn default_ffmpeg() -> String {
    "ffmpeg".into()
}
fn default_model_min_score() -> f32 {
    0.3
}
fn default_tile_overlap() -> f32 {
    0.2
}
fn default_shed_after() -> Option<Duration> {
    Some(Duration::from_secs(2))
}
fn default_nms_iou() -> f32 {
    0.45
}
fn default_max_bytes() -> usize {
    16 << 20
}
fn default_max_side() -> u32 {
    8192
}
fn default_debounce_score() -> f32 {
    0.3
}
fn default_enter_hits() -> NonZeroUsize {
    NonZeroUsize::new(3).unwrap()
}
fn default_enter_window() -> NonZeroUsize {
    NonZeroUsize::new(5).unwrap()
}
fn default_hold() -> Duration {
    Duration::from_millis(1500)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_checkpoint_after() -> Duration {
    Duration::from_secs(5)
}
fn default_roll_after() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_track_high_score() -> f32 {
    0.5
}
fn default_track_low_score() -> f32 {
    0.1
}
fn default_match_iou() -> f32 {
    0.3
}
fn default_low_match_iou() -> f32 {
    0.5
}
fn default_lost_after() -> Duration {
    Duration::from_millis(1500)
}
fn default_min_dwell() -> Duration {
    Duration::from_secs(2)
}
fn default_roll_rows() -> NonZeroUsize {
    NonZeroUsize::new(100_000).unwrap()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_viewer_queue() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap()
}
fn default_max_viewers() -> usize {
    20_000
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}
