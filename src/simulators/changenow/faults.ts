/**
 * What the simulator was told to do wrong: the fault every API call meets (down, 5xx, 401, slow), and how the next
 * created exchange misbehaves (a ForcedEnd), as set in process or through POST /sim/fault.
 */
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { HttpError, isWholeMs, readFaultBody } from '../http.ts';
import { FAULTS, FORCED_ENDS, type Fault, type ForcedEnd, type ForcedEndOptions } from './model.ts';

export class Faults {
  fault: Fault = 'none';
  slowMs = 2_000;
  nextEnd: ForcedEnd = null;
  nextEndOptions: ForcedEndOptions = {};

  /** The next created exchange ends this way instead of finishing normally. */
  armNextEnd(status: ForcedEnd, options: ForcedEndOptions): void {
    if (options.belowEstimatePercent !== undefined && !isPercent(options.belowEstimatePercent))
      throw new Error(
        `belowEstimatePercent must be a decimal from 0 to below 100 (got ${options.belowEstimatePercent})`,
      );
    this.nextEnd = status;
    this.nextEndOptions = options;
  }

  /** The armed end, disarmed: it is for the one exchange being created. */
  takeNextEnd(): { end: ForcedEnd; options: ForcedEndOptions } {
    const armed = { end: this.nextEnd, options: this.nextEndOptions };
    this.nextEnd = null;
    this.nextEndOptions = {};
    return armed;
  }
}

/** The body of POST /sim/fault, each field checked: absent ones leave their setting as it is. */
export interface FaultRequest {
  fault?: Fault;
  slowMs?: number;
  nextExchange?: ForcedEnd;
  belowEstimatePercent?: string;
  verifyingMs?: number;
}

export function parseFaultRequest(body: string): FaultRequest {
  const input = readFaultBody(body, FAULTS);
  if (
    input.nextExchange !== undefined &&
    input.nextExchange !== null &&
    !FORCED_ENDS.includes(input.nextExchange as string)
  )
    throw new HttpError(400, 'bad_request', `nextExchange must be one of ${FORCED_ENDS.join(', ')} or null`);
  if (
    input.belowEstimatePercent !== undefined &&
    !(typeof input.belowEstimatePercent === 'string' && isPercent(input.belowEstimatePercent))
  )
    throw new HttpError(400, 'bad_request', 'belowEstimatePercent must be a decimal string from 0 to below 100');
  if (input.verifyingMs !== undefined && !isWholeMs(input.verifyingMs))
    throw new HttpError(400, 'bad_request', 'verifyingMs must be a whole number of ms');
  return input;
}

function isPercent(text: string): boolean {
  return /^(0|[1-9][0-9]?)(\.[0-9]+)?$/.test(text);
}

/** Another address of the same format: an EVM address at random, else the same text with its last character changed. */
export function otherAddress(address: string): string {
  if (/^0x[0-9a-fA-F]{40}$/.test(address)) return privateKeyToAccount(generatePrivateKey()).address;
  return `${address.slice(0, -1)}${address.endsWith('z') ? 'y' : 'z'}`;
}
