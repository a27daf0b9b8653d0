// stylize-serve page: controls, webcam over a WebSocket (latest frame wins), image and video uploads.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_IN_FLIGHT = 2; // one frame being stylized, one on the wire: the server drops anything older
const CAPTURE_QUALITY = 0.8;
const controls = {};
let info = null;
// Read by the browser test and handy in the console.
window.liveStats = { received: 0, fps: 0, medianLatency: null, serverMs: null, dropped: 0, sent: 0 };

function showError(message) {
  const box = $("error");
  box.textContent = String(message).split("\n")[0];
  box.title = box.textContent;
  box.hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }

async function errorOf(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

// ------------------------------------------------------------------------------------------------ controls
function fillStyles() {
  const art = info.artifacts.find((a) => a.name === controls.artifact);
  const select = $("style");
  select.innerHTML = "";
  for (const name of art.styles) select.add(new Option(name, name));
  if (art.styles.length > 1) select.add(new Option("blend…", "__blend__"));
  $("style-row").hidden = art.styles.length < 2;
  const blend = $("blend");
  blend.innerHTML = "";
  blend.hidden = true;
  for (const name of art.styles) {
    const label = document.createElement("label");
    label.innerHTML = `${name} <input type="range" min="0" max="1" step="0.05" value="${name === art.styles[0] ? 1 : 0}" data-style="${name}">`;
    label.querySelector("input").addEventListener("input", () => setControls({ style: blendSpec() }));
    blend.appendChild(label);
  }
}

function blendSpec() {
  const parts = [...document.querySelectorAll("#blend input")].map((i) => `${i.dataset.style}:${i.value}`);
  return parts.join(",");
}

function setControls(changes) {
  Object.assign(controls, changes);
  if (live.socket && live.socket.readyState === WebSocket.OPEN) {
    live.socket.send(JSON.stringify({ type: "controls", ...changes }));
  }
}

function bindControls() {
  $("artifact").addEventListener("change", (e) => {
    setControls({ artifact: e.target.value, style: null });
    fillStyles();
  });
  $("style").addEventListener("change", (e) => {
    const blending = e.target.value === "__blend__";
    $("blend").hidden = !blending;
    setControls({ style: blending ? blendSpec() : e.target.value });
  });
  $("strength").addEventListener("input", (e) => {
    $("strength-value").textContent = e.target.value;
    setControls({ strength: Number(e.target.value) });
  });
  $("stroke_scale").addEventListener("input", (e) => {
    $("stroke-value").textContent = e.target.value;
    setControls({ stroke_scale: Number(e.target.value) });
  });
  $("preserve_color").addEventListener("change", (e) => setControls({ preserve_color: e.target.checked }));
  $("consistency").addEventListener("input", (e) => {
    $("consistency-value").textContent = e.target.value;
    setControls({ consistency: Number(e.target.value) });
  });
}

function formWith(file, field) {
  const form = new FormData();
  form.append(field, file);
  for (const [key, value] of Object.entries(controls)) if (value !== null && value !== undefined) form.append(key, value);
  return form;
}

// ------------------------------------------------------------------------------------------------ webcam
const live = {
  socket: null, stream: null, inFlight: 0, times: [], latencies: [], capture: document.createElement("canvas"),
  lastTime: -1, // the camera frame last sent (video.currentTime): a frame is never sent twice
  sent: new Map(), // tag -> the JPEG sent, for the last few frames (the browser test compares them with the result)
  shown: null, // tag of the frame on the canvas
};

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
}

async function startWebcam() {
  clearError();
  try {
    // 640x480 unless the address asks otherwise, e.g. http://127.0.0.1:8000/?width=1280&height=720
    const params = new URLSearchParams(location.search);
    const size = { width: Number(params.get("width") || 640), height: Number(params.get("height") || 480) };
    live.stream = await navigator.mediaDevices.getUserMedia({ video: size, audio: false });
  } catch (e) {
    showError(`webcam: ${e.name}: ${e.message}`);
    return;
  }
  $("camera").srcObject = live.stream;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
  socket.binaryType = "arraybuffer";
  live.socket = socket;
  live.inFlight = 0;
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "controls", ...controls }));
    $("start").disabled = true;
    $("stop").disabled = false;
    pump();
  };
  socket.onmessage = onLiveMessage;
  socket.onclose = () => stopWebcam();
}

function stopWebcam() {
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  if (live.socket && live.socket.readyState <= WebSocket.OPEN) live.socket.close();
  live.stream = null;
  live.socket = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function pump() {
  // Capture and send whenever fewer than MAX_IN_FLIGHT frames are out; never queue more.
  const video = $("camera");
  if (!live.socket || live.socket.readyState !== WebSocket.OPEN) return;
  if (live.inFlight < MAX_IN_FLIGHT && video.readyState >= 2 && video.videoWidth && video.currentTime !== live.lastTime) {
    live.inFlight += 1;
    live.lastTime = video.currentTime;
    const c = live.capture;
    if (c.width !== video.videoWidth || c.height !== video.videoHeight) {
      c.width = video.videoWidth; // resizing reallocates the canvas: only when the camera's size changes
      c.height = video.videoHeight;
    }
    c.getContext("2d").drawImage(video, 0, 0);
    const tag = performance.now();
    c.toBlob(async (blob) => {
      const header = new Float64Array([tag]);
      if (live.socket && live.socket.readyState === WebSocket.OPEN) {
        live.sent.set(tag, blob);
        if (live.sent.size > 8) live.sent.delete(live.sent.keys().next().value);
        live.socket.send(new Blob([header, blob]));
        window.liveStats.sent += 1;
      } else {
        live.inFlight -= 1;
      }
    }, "image/jpeg", CAPTURE_QUALITY);
  }
  requestAnimationFrame(pump);
}

async function onLiveMessage(event) {
  if (typeof event.data === "string") {
    const message = JSON.parse(event.data);
    if (message.type === "error") {
      live.inFlight = Math.max(0, live.inFlight - 1);
      showError(message.error);
    }
    return;
  }
  const view = new DataView(event.data);
  const tag = view.getFloat64(0, true);
  const serverMs = view.getFloat32(8, true);
  const dropped = view.getUint32(12, true);
  live.inFlight = Math.max(0, live.inFlight - 1 - (dropped - window.liveStats.dropped));
  const bitmap = await createImageBitmap(new Blob([event.data.slice(16)], { type: "image/jpeg" }));
  const canvas = $("stylized");
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
  }
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  live.shown = tag;
  recordFrame(performance.now(), tag, serverMs, dropped);
}

function recordFrame(now, tag, serverMs, dropped) {
  live.times.push(now);
  while (live.times.length && now - live.times[0] > 2000) live.times.shift();
  live.latencies.push(now - tag);
  if (live.latencies.length > 60) live.latencies.shift();
  const span = (now - live.times[0]) / 1000;
  const s = window.liveStats;
  s.received += 1;
  s.fps = live.times.length > 1 && span > 0 ? (live.times.length - 1) / span : 0;
  s.medianLatency = median(live.latencies);
  s.serverMs = serverMs;
  s.dropped = dropped;
  $("fps").textContent = s.fps.toFixed(1);
  $("latency").textContent = s.medianLatency.toFixed(0);
  $("server-ms").textContent = serverMs.toFixed(0);
  $("dropped").textContent = dropped;
}

// ------------------------------------------------------------------------------------------------ uploads
async function stylizeImage(file) {
  clearError();
  const response = await fetch("/api/image", { method: "POST", body: formWith(file, "image") });
  if (!response.ok) return showError(await errorOf(response));
  const img = $("image-result");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await response.blob());
  img.hidden = false;
}

async function stylizeVideo(file) {
  clearError();
  $("video-result").hidden = true;
  $("video-download").hidden = true;
  const response = await fetch("/api/videos", { method: "POST", body: formWith(file, "video") });
  if (!response.ok) return showError(await errorOf(response));
  let job = await response.json();
  const bar = $("video-progress");
  bar.hidden = false;
  while (job.status === "queued" || job.status === "running") {
    bar.value = job.progress || 0;
    $("video-status").textContent = `${job.status}: ${job.frames}${job.total_frames ? " / " + job.total_frames : ""} frames`;
    await new Promise((r) => setTimeout(r, 300));
    const poll = await fetch(`/api/videos/${job.id}`);
    if (!poll.ok) return showError(await errorOf(poll));
    job = await poll.json();
  }
  bar.hidden = true;
  if (job.status === "failed") {
    $("video-status").textContent = "failed";
    return showError(job.error);
  }
  $("video-status").textContent = `done: ${job.frames} frames`;
  $("video-result").src = job.result;
  $("video-result").hidden = false;
  $("video-download").href = job.result;
  $("video-download").hidden = false;
}

// ------------------------------------------------------------------------------------------------ start
async function init() {
  bindControls();
  $("start").addEventListener("click", startWebcam);
  $("stop").addEventListener("click", stopWebcam);
  $("image-file").addEventListener("change", (e) => e.target.files[0] && stylizeImage(e.target.files[0]));
  $("video-file").addEventListener("change", (e) => e.target.files[0] && stylizeVideo(e.target.files[0]));
  const response = await fetch("/api/info");
  info = await response.json();
  for (const a of info.artifacts) $("artifact").add(new Option(`${a.name} (${a.architecture})`, a.name));
  controls.artifact = info.default;
  fillStyles();
  $("device").textContent = `${info.device} · ${info.backend}`;
  document.body.dataset.ready = "1";
}

init().catch((e) => showError(`cannot reach the server: ${e.message}`));
