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
