// speechmpq browser demo: microphone or a dropped file -> 16 kHz int16 PCM -> WebSocket -> transcripts.
"use strict";
const $ = (id) => document.getElementById(id);
const RATE = 16000;
let socket = null, audio = null, sentSeconds = 0, sending = false;
// window.speechmpq is read by the end-to-end test; with ?record=1 the page also keeps every PCM piece
// it sent (window.speechmpq.sent), so the test can check the server's transcript of exactly that audio.
const PARAMS = new URLSearchParams(location.search);
const RECORD = PARAMS.has("record");
const NATIVE_RATE = PARAMS.get("rate") === "native";  // capture at the device rate, downsample in the worklet
window.speechmpq = { finals: [], sentSeconds: 0, state: "idle", errors: [], sent: [] };

function setStatus(text) { $("status").textContent = text; window.speechmpq.state = text; }

async function loadModel() {
  const model = await (await fetch("/api/model")).json();
  const bits = model.average_bits == null ? "" : `, ${model.average_bits.toFixed(2)} bits per weight on average`;
  $("model").textContent = `${model.name}: ${model.weights}${bits}, ${(model.bytes / 1e6).toFixed(2)} MB` +
    ` · chunk ${model.chunk_ms} ms, look-ahead ${model.right_ms} ms, left context ${model.left_ms} ms` +
    (model.decoder ? ` · ${model.decoder}` : "");
  $("kernels").textContent = [model.kernels, model.frontend_cache].filter(Boolean).join(" · ");
  drawBits(model);
}

function drawBits(model) {
  const svg = $("bitchart"), NS = "http://www.w3.org/2000/svg";
  svg.innerHTML = "";
  const layers = model.layers || [];
  if (!layers.length) { $("bits-caption").textContent = "(no bit plan in this model's metadata)"; return; }
  $("bits-caption").textContent = `(${layers.length} layers; hover a bar for its name)`;
  const width = svg.clientWidth || 900, height = 150, top = 10, bottom = 22, left = 28;
  const maxBits = Math.max(8, ...layers.map((l) => l.bits));
  const barWidth = (width - left) / layers.length;
  const colors = { 2: "#d9534f", 4: "#f0ad4e", 8: "#5cb85c" };
  for (const tick of [2, 4, 8]) {
    const y = top + (height - top - bottom) * (1 - tick / maxBits);
    const line = document.createElementNS(NS, "line");
    Object.entries({ x1: left, x2: width, y1: y, y2: y, stroke: "#e3e7eb" }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.appendChild(line);
    const label = document.createElementNS(NS, "text");
    Object.entries({ x: 2, y: y + 4, "font-size": 11, fill: "#6b7580" }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = tick; svg.appendChild(label);
  }
  layers.forEach((layer, i) => {
    const h = (height - top - bottom) * layer.bits / maxBits;
    const rect = document.createElementNS(NS, "rect");
    Object.entries({ x: left + i * barWidth + 1, y: height - bottom - h, width: Math.max(1, barWidth - 2), height: h,
      fill: colors[layer.bits] || "#6f8fa8" }).forEach(([k, v]) => rect.setAttribute(k, v));
    const title = document.createElementNS(NS, "title");
    title.textContent = `${layer.name}: ${layer.bits} bits` + (layer.shape ? ` (${layer.shape.join("x")})` : "");
    rect.appendChild(title); rect.classList.add("bar"); rect.dataset.bits = layer.bits;
    svg.appendChild(rect);
  });
  const blocks = new Set(layers.map((l) => (l.name.match(/layers\.(\d+)\./) || [])[1]).filter((b) => b !== undefined));
  if (blocks.size) {
    const perBlock = layers.length / blocks.size;
    [...blocks].forEach((block, i) => {
      const label = document.createElementNS(NS, "text");
      Object.entries({ x: left + (i + 0.5) * perBlock * barWidth, y: height - 6, "font-size": 11, fill: "#6b7580",
        "text-anchor": "middle" }).forEach(([k, v]) => label.setAttribute(k, v));
      label.textContent = `block ${block}`; svg.appendChild(label);
    });
  }
}

function showStats(m) {
  $("chunk-ms").textContent = `${m.chunk_ms.toFixed(1)} ms`;
  $("chunk-p50").textContent = `${m.chunk_ms_p50.toFixed(1)} ms`;
  $("chunks").textContent = m.chunks;
  $("rtf").textContent = m.rtf.toFixed(3);
  $("audio-s").textContent = `${m.audio_seconds.toFixed(1)} s`;
  $("rss").textContent = `${m.peak_rss_mib.toFixed(0)} MiB`;
}

function openSocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === "ready") resolve(ws);
      else if (m.type === "partial") {
        $("stable").textContent = m.stable; $("tentative").textContent = m.tentative; showStats(m);
      } else if (m.type === "final") {
        $("stable").textContent = ""; $("tentative").textContent = "";
        if (m.text) { const li = document.createElement("li"); li.textContent = m.text; li.className = "final"; $("finals").appendChild(li); }
        window.speechmpq.finals.push(m.text); showStats(m);
        setStatus(`done: ${m.audio_seconds.toFixed(1)} s of audio, end of speech to final ${m.end_of_speech_ms.toFixed(0)} ms`);
        ws.close();
      } else if (m.type === "error") { window.speechmpq.errors.push(m.message); setStatus(`error: ${m.message}`); }
    };
    let ready = false;
    const opened = resolve;
    resolve = (value) => { ready = true; opened(value); };
    ws.onerror = () => reject(new Error("cannot connect to the speechmpq server"));
    ws.onclose = () => {
      if (socket === ws) socket = null;
      if (!ready) reject(new Error(window.speechmpq.errors.slice(-1)[0] || "the server closed the connection"));
    };
  });
}

function send(pcm) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(pcm);
  if (RECORD) window.speechmpq.sent.push(new Int16Array(pcm.slice(0)));
  sentSeconds += pcm.byteLength / 2 / RATE;
  window.speechmpq.sentSeconds = sentSeconds;
  $("audio-s").textContent = `${sentSeconds.toFixed(1)} s`;
}

async function micContext(media) {
  // A 16 kHz context lets the browser resample; where it cannot (Firefox refuses to connect a
  // microphone to a context of another rate) the worklet downsamples from the device rate.
  if (!NATIVE_RATE) {
    let context = null;
    try {
      context = new AudioContext({ sampleRate: RATE });
      return { context, source: context.createMediaStreamSource(media) };
    } catch (error) { if (context) context.close(); }
  }
  const context = new AudioContext();
  return { context, source: context.createMediaStreamSource(media) };
}

async function startMicrophone() {
  $("start").disabled = true;
  let media = null;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false,
      noiseSuppression: false, autoGainControl: false } });
    const { context, source } = await micContext(media);
    await context.audioWorklet.addModule("/static/worklet.js");
    const node = new AudioWorkletNode(context, "pcm-downsampler", { processorOptions: { targetRate: RATE } });
    socket = await openSocket();
    sentSeconds = 0; window.speechmpq.sent = [];
    node.port.onmessage = (event) => {
      if (event.data === "flushed") { node.flushed = true; finishStream(); } else send(event.data);
    };
    source.connect(node);
    audio = { context, media, node, source };
    $("stop").disabled = false;
    setStatus(`listening (${context.sampleRate} Hz -> 16 kHz)`);
  } catch (error) {
    if (media) media.getTracks().forEach((t) => t.stop());
    if (socket) { socket.close(); socket = null; }
    setStatus(`error: ${error.message}`); window.speechmpq.errors.push(error.message);
    $("start").disabled = false;
  }
}

function finishStream() {
  if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ type: "end" })); setStatus("finishing…"); }
}

function stop() {
  $("stop").disabled = true; $("start").disabled = false;
  if (!audio) { finishStream(); return; }
  const { context, media, node, source } = audio;
  audio = null;
  source.disconnect(); media.getTracks().forEach((t) => t.stop());
  // the worklet posts what it still holds, then "flushed"; only then is the stream ended
  node.port.postMessage("flush");
  setTimeout(() => {  // the worklet did not answer: end the stream anyway
    node.disconnect(); context.close();
    if (!node.flushed) finishStream();
  }, 1000);
}

async function transcribeFile(file) {
  if (sending) return;
  sending = true;
  try {
    setStatus(`decoding ${file.name}…`);
    const bytes = await file.arrayBuffer();
    // decoding in a 16 kHz context resamples to 16 kHz once (not at all for a 16 kHz file)
    const decoded = await new OfflineAudioContext(1, 1, RATE).decodeAudioData(bytes);
    let samples = decoded.getChannelData(0);
    if (decoded.numberOfChannels > 1) {  // down-mix to mono
      const offline = new OfflineAudioContext(1, decoded.length, RATE);
      const source = offline.createBufferSource();
      source.buffer = decoded; source.connect(offline.destination); source.start();
      samples = (await offline.startRendering()).getChannelData(0);
    }
    socket = await openSocket();
    sentSeconds = 0; window.speechmpq.sent = [];
    setStatus(`streaming ${file.name} (${decoded.duration.toFixed(1)} s)`);
    const piece = RATE / 10;
    for (let i = 0; i < samples.length; i += piece) {
      const part = samples.subarray(i, i + piece), pcm = new Int16Array(part.length);
      // x * 32768 inverts the decoder's k / 32768: a 16-bit file reaches the server bit for bit
      for (let j = 0; j < part.length; j++) pcm[j] = Math.max(-32768, Math.min(32767, Math.round(part[j] * 32768)));
      send(pcm.buffer);
      await new Promise((r) => setTimeout(r, 20));  // about 5x real time: partials stay visible
    }
    socket.send(JSON.stringify({ type: "end" }));
  } catch (error) {
    setStatus(`error: ${file.name}: ${error.message}`); window.speechmpq.errors.push(error.message);
  } finally { sending = false; }
}

$("start").onclick = startMicrophone;
$("stop").onclick = stop;
$("file").onchange = (event) => { if (event.target.files[0]) transcribeFile(event.target.files[0]); };
const drop = $("drop");
drop.ondragover = (event) => { event.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (event) => {
  event.preventDefault(); drop.classList.remove("over");
  if (event.dataTransfer.files[0]) transcribeFile(event.dataTransfer.files[0]);
};
loadModel().catch((error) => { $("model").textContent = `cannot load the model description: ${error.message}`; });
