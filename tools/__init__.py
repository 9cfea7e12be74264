"""Tools beside the product: the demo month, the traffic simulator, the benchmarks, the
fault-injection suite, the local message peers (SMTP and SMS-gateway sinks) and the API
documents' generator. They import the services' rules and the kernel; nothing in the product
imports them, and the production image does not contain them (`pip install '.[tools]'` in a
checkout, or the Dockerfile's `tools` target). `aftersales` shows their commands when they are
installed."""
