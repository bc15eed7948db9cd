export { route, operationOf, type Answer, type Auth, type Operation, type RouteSpec } from './route.ts';
export { openApiDocument, type DocumentOptions } from './document.ts';
export { component, described } from './registry.ts';
export * as shapes from './shapes.ts';
