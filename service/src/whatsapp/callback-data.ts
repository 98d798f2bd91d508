// biz_opaque_callback_data: Meta echoes it in every status webhook of the message.

/** Our id rides in biz_opaque_callback_data, so a status webhook can name the message even if its wamid was never saved. */
export function callbackData(messageId: number, callerData: unknown): string {
  return typeof callerData === 'string' && callerData.length > 0 ? `wr:${messageId}|${callerData}`.slice(0, 512) : `wr:${messageId}`;
}

/** The message id in a status's biz_opaque_callback_data, if we put it there. */
export function messageIdFromCallback(data: unknown): number | null {
  if (typeof data !== 'string') return null;
  const m = /^wr:(\d{1,15})(?:\||$)/.exec(data);
  return m ? Number(m[1]) : null;
}
