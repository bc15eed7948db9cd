/**
 * Where a page of a statement ended, handed to the client as an opaque string (`after`) and read back from it. It
 * names the channel and the exact range it was handed out for, so a cursor is never applied to another statement:
 * the range (and with it the moment "now" stood for) is fixed by the first page and carried by the cursor.
 */

/** A request whose paging parameters cannot be answered: a 400 with this message. */
export class BadPageError extends Error {
  override name = 'BadPageError';
  /** Read by the HTTP error handler: bad input, answered 400 with this message. */
  readonly statusCode = 400;
}
