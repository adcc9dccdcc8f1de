/** The cursor file's content: a plain decimal number, as the tutorial's flow writes it. */
export function parseCursorText(text: string, where: string): bigint | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  if (!/^\d+$/.test(t))
    throw new Error(
      `The cursor file ${where} does not hold a whole number (it holds ${JSON.stringify(t.slice(0, 40))}). Fix or delete the file.`,
    );
  return BigInt(t);
}

export const formatCursorText = (v: bigint): string => v.toString();

/** Reads a downloaded body (the SDKs hand over a Node stream) as UTF-8 text. */
export async function streamToString(stream: NodeJS.ReadableStream | undefined): Promise<string> {
  if (!stream) return '';
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks).toString('utf8');
}
