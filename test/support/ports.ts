export { freePort } from '../../src/simulators/ports.ts';
