// AudioWorklet: microphone samples at the context's rate -> 16 kHz mono int16 PCM, posted in ~100 ms
// pieces. Downsampling averages the input over each output sample's span (a box low-pass), which is
// enough for speech at 16 kHz; a context below 16 kHz is upsampled by linear interpolation. The
// message "flush" posts what is still held, then "flushed".
class PcmDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.target = (options.processorOptions && options.processorOptions.targetRate) || 16000;
    this.step = sampleRate / this.target;  // input samples per output sample
    this.position = 0;                      // fractional read position into this.pending
    this.pending = new Float32Array(0);
    this.out = [];
    this.piece = Math.round(this.target / 10);
    this.port.onmessage = (event) => {
      if (event.data === "flush") { this.post(); this.port.postMessage("flushed"); }
    };
  }
  post() {
    if (!this.out.length) return;
    const pcm = new Int16Array(this.out.length);
    for (let i = 0; i < pcm.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(this.out[i] * 32768)));
    this.port.postMessage(pcm.buffer, [pcm.buffer]);
    this.out = [];
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const frames = input[0].length;
      const mono = new Float32Array(frames);
      for (const channel of input) for (let i = 0; i < frames; i++) mono[i] += channel[i] / input.length;
      const joined = new Float32Array(this.pending.length + frames);
      joined.set(this.pending); joined.set(mono, this.pending.length);
      let pos = this.position;
      const half = this.step / 2;
      while (pos + this.step < joined.length) {
        let value;
        if (this.step === 1) value = joined[pos];
        else if (this.step < 1) {
          const i = Math.floor(pos), t = pos - i;
          value = joined[i] * (1 - t) + joined[Math.min(i + 1, joined.length - 1)] * t;
        } else {
          const from = Math.max(0, Math.floor(pos - half + 0.5)), to = Math.min(joined.length, Math.floor(pos + half + 0.5));
          let sum = 0; for (let i = from; i < to; i++) sum += joined[i];
          value = sum / Math.max(1, to - from);
        }
        this.out.push(Math.max(-1, Math.min(1, value)));
        pos += this.step;
      }
      const keep = Math.max(0, Math.floor(pos - half) - 1);
      this.pending = joined.slice(keep);
      this.position = pos - keep;
      if (this.out.length >= this.piece) this.post();
    }
    return true;
  }
}
registerProcessor("pcm-downsampler", PcmDownsampler);
