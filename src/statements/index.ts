export {
  channelStatement,
  StatementCheckError,
  STATEMENT_ASSETS,
  type Statement,
  type StatementItem,
} from './statement.ts';
export { statementCsv, csvField, csvLine, STATEMENT_COLUMNS } from './csv.ts';
export { parseBounds, parseTimestamp, BadRangeError, type Bounds, type TimeRange } from './range.ts';
