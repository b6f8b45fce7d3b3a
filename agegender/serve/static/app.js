// The camera page: camera frames go to /ws/live as JPEG, each once, at most two awaiting a
// reply (one being analyzed, one ready next: the server never waits for the network, and
// nothing queues); each reply's faces are drawn on the very frame they were found in.
// No framework, no build step, nothing from a CDN.
"use strict";

const FRAME_WIDTH = 640; // frames are scaled to this width before encoding
const JPEG_QUALITY = 0.8;
const MAX_IN_FLIGHT = 2; // the server keeps only the newest waiting frame: more would be dropped
const FEMALE = "#ff50b4";
const MALE = "#28aaff";

const video = document.getElementById("video");
const view = document.getElementById("view");
const stats = document.getElementById("stats");
const message = document.getElementById("message");
const modelInfo = document.getElementById("model");
const toggle = document.getElementById("toggle");
// Frames awaiting their reply, oldest first ({seq, canvas, sentAt}). A reply's `seq` says
// which message it answers; older ones were dropped by the server for a newer frame.
const pending = [];
let sent = 0;
const spare = []; // canvases to reuse
let shown = null; // the canvas of the frame on screen

// What tests and curious users can read from the console: the latest replies, and the frame
// the last reply answers.
const state = (window.agegender = {
  replies: 0,
  last: null,
  history: [],
  labels: [],
  error: null,
  inFlight: 0,
  lastFrame: () => shown && shown.toDataURL("image/png"),
});

let socket = null;
let paused = false;
let rtt = null;
let frameTimes = [];

function showMessage(text) {
  state.error = text;
  message.textContent = text;
  message.classList.add("shown");
  stats.textContent = "stopped";
}

function cameraProblem(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "The camera was refused. Allow camera access for this page (the camera icon in the address bar) and reload.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return "No camera was found. Connect a camera and reload.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The camera is in use by another program. Close it and reload.";
  }
  return `The camera could not be opened (${name || error}).`;
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showMessage(
      "This browser gives no camera to this page. Cameras need a secure page: open it as " +
        "http://127.0.0.1:PORT/ or http://localhost:PORT/ on this machine, or over https."
    );
    return false;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: false,
    });
    await video.play();
    if (framesKnown) video.requestVideoFrameCallback(onCameraFrame);
    return true;
  } catch (error) {
    showMessage(cameraProblem(error));
    return false;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    stats.textContent = "waiting for the first reply…";
    sendFrame();
  };
  socket.onmessage = (event) => onReply(JSON.parse(event.data));
  socket.onclose = (event) => {
    pending.length = state.inFlight = 0;
    if (!state.error) {
      showMessage(
        event.reason
          ? `The server closed the connection: ${event.reason}`
          : "The connection to the server was lost. Is serve.py still running? Reload to retry."
      );
    }
  };
}

// Camera frames presented so far (requestVideoFrameCallback), so that a frame is sent once:
// when the server answers faster than the camera delivers, the page waits for the next one.
const framesKnown = "requestVideoFrameCallback" in HTMLVideoElement.prototype;
let presented = 0;
let lastSent = -1;
let waiting = false;

function onCameraFrame(now, metadata) {
  presented = metadata.presentedFrames;
  if (waiting) {
    waiting = false;
    sendFrame();
  }
  video.requestVideoFrameCallback(onCameraFrame);
}

function sendFrame() {
  if (paused || pending.length >= MAX_IN_FLIGHT) return;
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (!video.videoWidth) {
    requestAnimationFrame(sendFrame);
    return;
  }
  if (framesKnown && presented === lastSent) {
    waiting = true; // onCameraFrame sends it
    return;
  }
  lastSent = presented;
  const canvas = spare.pop() || document.createElement("canvas");
  const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const frame = { seq: 0, canvas, sentAt: 0 };
  pending.push(frame);
  state.inFlight = pending.length;
  canvas.toBlob(
    (blob) => {
      frame.seq = ++sent; // numbered as sent: encoding may finish out of order
      frame.sentAt = performance.now();
      socket.send(blob);
      sendFrame(); // a second frame may go as soon as the camera has one
    },
    "image/jpeg",
    JPEG_QUALITY
  );
}

function onReply(reply) {
  const frame = pending.find((f) => f.seq === reply.seq);
  if (!frame) return;
  const answered = (f) => f.seq !== 0 && f.seq <= reply.seq; // older ones were dropped
  for (const old of pending.filter((f) => answered(f) && f !== frame)) spare.push(old.canvas);
  const rest = pending.filter((f) => !answered(f));
  pending.length = 0;
  pending.push(...rest);
  state.inFlight = pending.length;
  const now = performance.now();
  if (reply.error) {
    stats.textContent = `server: ${reply.error}`;
    spare.push(frame.canvas);
  } else {
    const took = now - frame.sentAt;
    rtt = rtt === null ? took : 0.8 * rtt + 0.2 * took;
    frameTimes.push(now);
    frameTimes = frameTimes.filter((t) => now - t < 2000);
    const fps = frameTimes.length > 1 ? (1000 * (frameTimes.length - 1)) / (now - frameTimes[0]) : 0;
    stats.textContent = `${fps.toFixed(1)} frames/s · round trip ${rtt.toFixed(0)} ms · server ${reply.ms.toFixed(0)} ms · ${reply.faces.length} face(s)`;
    if (shown) spare.push(shown);
    shown = frame.canvas;
    draw(reply, shown);
    state.replies += 1;
    state.last = reply;
    state.fps = fps;
    state.rtt = rtt;
    state.history.push(reply.faces.map((f) => f.id));
    if (state.history.length > 300) state.history.shift();
  }
  sendFrame();
}

function label(face) {
  const female = face.p_female >= 0.5;
  const confidence = female ? face.p_female : 1 - face.p_female;
  return `#${face.id} ${female ? "female" : "male"} ${face.age.toFixed(0)} (${(100 * confidence).toFixed(0)}%)`;
}

function draw(reply, frame) {
  if (view.width !== reply.width || view.height !== reply.height) {
    view.width = reply.width;
    view.height = reply.height;
  }
  const ctx = view.getContext("2d");
  ctx.drawImage(frame, 0, 0, view.width, view.height);
  const font = Math.max(13, Math.round(reply.height / 32));
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  ctx.lineWidth = Math.max(2, Math.round(reply.height / 160));
  const labels = [];
  for (const face of reply.faces) {
    const [x1, y1, x2, y2] = face.box;
    const color = face.p_female >= 0.5 ? FEMALE : MALE;
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = label(face);
    labels.push(text);
    const width = ctx.measureText(text).width + 8;
    const top = Math.max(0, y1 - font - 6);
    ctx.fillStyle = color;
    ctx.fillRect(x1 - ctx.lineWidth / 2, top, width, font + 6);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x1 + 4 - ctx.lineWidth / 2, top + font);
  }
  state.labels = labels;
}

async function loadModelInfo() {
  try {
    const health = await (await fetch("/api/health")).json();
    const m = health.model;
    modelInfo.textContent = `${m.name} · ${m.backend} · ${m.image_size} px · detector ${m.detector}`;
  } catch (error) {
    modelInfo.textContent = "";
  }
}

toggle.addEventListener("click", () => {
  paused = !paused;
  toggle.textContent = paused ? "Resume" : "Pause";
  if (!paused) sendFrame();
});

(async () => {
  loadModelInfo();
  if (await startCamera()) connect();
})();
