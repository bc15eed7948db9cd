/**
 * What the admin actions on one resource (a payment, conversion, payout or transfer) declare alike: the answers a
 * refused or done action gives, and a body read only for resolve. Each action's words, log lines and refusals stay
 * with it; only their form is written here.
 */
import type { z } from 'zod';
import { shapes } from '../../openapi/index.ts';

export interface ActionWords {
  /** The 200's description; by default `Done: the <noun> as it is now.` */
  readonly done?: string;
  /** The 400's description: what in the request can be wrong. */
  readonly badRequest: string;
  /** The 409's description: why an action is refused where the resource stands. */
  readonly notSafe: string;
}

/** 200 the resource as it is now, 400 a bad request, 404 no such one (worded as the reads word it), 409 refused. */
export const actionAnswers = (noun: string, item: z.ZodType, words: ActionWords) => ({
  200: { description: words.done ?? `Done: the ${noun} as it is now.`, schema: item },
  400: { description: words.badRequest, schema: shapes.errorBody },
  404: { description: `No such ${noun}.`, schema: shapes.errorBody },
  409: { description: words.notSafe, schema: shapes.errorBody },
});

/** A body only resolve reads (what became of the resource); the other actions ignore one, so none is required. */
export const resolveBody = <B extends z.ZodType>(schema: B, description: string) => ({
  schema: schema.optional(),
  required: false,
  when: (params: { action: string }) => params.action === 'resolve',
  description,
});
