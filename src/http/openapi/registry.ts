/**
 * What the OpenAPI document says about a zod schema beyond its shape: a component name for the shapes it shows once and
 * refers to (a channel, a payout, the error body), and a description. Kept in a registry of our own rather than zod's
 * global one, so that a name given here cannot collide with another library's, and nothing outside the description
 * sees it.
 */
import { z } from 'zod';

export interface SchemaNotes {
  /** The name under components/schemas; every use refers to it. */
  id?: string;
  description?: string;
}

export const apiSchemas = z.registry<SchemaNotes>();

/** The schema, shown in the document as a component named `id`. */
export function component<T extends z.ZodType>(id: string, schema: T, description?: string): T {
  apiSchemas.add(schema, { id, ...(description !== undefined && { description }) });
  return schema;
}

/**
 * The schema with a description in the document. A new schema (a copy of `schema`) is registered, so one shared piece
 * (`decimal`, say) can be described differently at each use.
 */
export function described<T extends z.ZodType>(description: string, schema: T): T {
  const copy = schema.clone();
  apiSchemas.add(copy, { description });
  return copy;
}
