import { describeStoreContract } from './store-contract';
import { embeddedHarness } from './embedded-harness';

describeStoreContract('embedded', embeddedHarness);
