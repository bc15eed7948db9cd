export {
  channelStatement,
  StatementCheckError,
  STATEMENT_PAGE_DEFAULT,
  STATEMENT_PAGE_MAX,
  STATEMENT_ASSETS,
  type Statement,
  type StatementPage,
  type StatementItem,
} from './statement.ts';
export { statementCsv, statementCsvLines, csvField, csvLine, STATEMENT_COLUMNS } from './csv.ts';
export { parseBounds, parseTimestamp, resolveRange, BadRangeError, type Bounds, type TimeRange } from './range.ts';
export { exportCsv, EXPORTS, EXPORT_BATCH, type ExportName } from './exports.ts';
export { statementQuery, readStatement, type StatementQuery, type StatementAnswer } from './query.ts';
export { BadPageError } from './cursor.ts';
export { readHorizon, cutRange, type Horizon } from './horizon.ts';
