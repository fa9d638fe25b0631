#!/bin/sh
# Apply the production recipe to a running Prefect server: the lake's bucket, the `fusionlake`
# process work pool and the deployments of infra/prefect.yaml. Idempotent: run it again after
# editing prefect.yaml. Reads the environment of production.env (PREFECT_API_URL,
# FUSIONLAKE_LAKE, the AWS variables); compose's `setup` service and tests/test_production.py
# run it as it is.
set -eu
cd "$(dirname "$0")/.."

# The bucket that FUSIONLAKE_LAKE names (s3://bucket/prefix), created if it is missing.
python - <<'PY'
import os
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

lake = urlparse(os.environ["FUSIONLAKE_LAKE"])
if lake.scheme == "s3":
    s3 = boto3.client("s3")
    try:
        s3.head_bucket(Bucket=lake.netloc)
    except ClientError:
        s3.create_bucket(Bucket=lake.netloc)
        print(f"created bucket {lake.netloc}")
PY

prefect work-pool create fusionlake --type process --overwrite
prefect --no-prompt deploy --all --prefect-file infra/prefect.yaml
