/**
 * Events out: business facts written with the change they report (by the triggers of migration 023), read in a stable order (read.ts),
 * pulled through GET /api/events or pushed, signed, to registered webhook endpoints (endpoints.ts, dispatch.ts).
 */
export { EVENT_TYPES, type EventBody, type EventType } from './types.ts';
export { decodeCursor, encodeCursor, readEvents, toBody, START, type Position } from './read.ts';
export { signEvent, verifyEventSignature, SIGNATURE_HEADER } from './signature.ts';
export {
  checkEndpointUrl,
  createEndpoint,
  deleteEndpoint,
  EndpointRefused,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  retryDelivery,
  type DeliveryView,
  type EndpointView,
  type SelfAddresses,
} from './endpoints.ts';
export { dispatchEvents, type DispatchDeps, type DispatchSettings } from './dispatch.ts';
export { eventCron, eventTasks, EVENT_TASKS } from './tasks.ts';
