/** Byte sizes on the command line (`0.25GiB`, `512MiB`, `1GB`) and in reports. */

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
};

/** Parses `0.25GiB`, `512MiB`, `2GB` or a plain byte count; throws naming the flag otherwise. */
export function parseSize(flag: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = (match?.[2] ?? '').toLowerCase() || 'b';
  const factor = UNIT_BYTES[unit];
  if (!match || factor === undefined || Number(match[1]) <= 0) {
    throw new Error(
      `${flag} must be a positive size such as 0.25GiB, 512MiB or 1GB, got '${text}'`,
    );
  }
  return Math.round(Number(match[1]) * factor);
}

/** `1.00 GiB`, `312 MiB`, `4.0 KiB`: binary units, three significant digits. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** Short label for a size flag value, used in cache directory names: `0.25GiB` → `256MiB`. */
export function sizeLabel(bytes: number): string {
  if (bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`;
  if (bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  return `${bytes}B`;
}
