/**
 * Reads a watch response's body — one JSON event per line, as the API server streams them — into
 * `events` until `until(events)` holds or the stream ends.
 */
export async function readWatchStream<T>(body: ReadableStream<Uint8Array>, events: T[], until: (events: T[]) => boolean): Promise<void> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffered = '';
  while (!until(events)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buffered.slice(0, newline)) as T);
      buffered = buffered.slice(newline + 1);
    }
  }
}
