"""A valid stack file's `kiln:` values as parsed data: a 90/10 CPU endpoint to bend in tests."""

from __future__ import annotations

from typing import Any


def valid_values() -> dict[str, Any]:
    """A fresh copy each call, so a test can change it freely."""
    return {
        "region": "us-east-1",
        "environment": "prod",
        "mlflowTrackingUri": "http://mlflow.internal:5000",
        "network": {"vpcId": "vpc-0abc0000000000001", "privateSubnetIds": ["subnet-0a1000000000000a1", "subnet-0b1000000000000b1"]},
        # Prod boots only pinned AMIs (an example id: the tests never reach EC2).
        "amis": {"cpu": "ami-0123456789abcdef0", "gpu": "ami-0fedcba9876543210"},
        "endpoints": [
            {
                "name": "fraud-scorer",
                "servedModels": [
                    {"name": "champion", "modelUri": "models:/fraud/12", "computeType": "CPU_MEDIUM", "workloadSize": "Small"},
                    {"name": "challenger", "modelUri": "models:/fraud@challenger", "computeType": "CPU_MEDIUM", "workloadSize": "Small"},
                ],
                "trafficConfig": {
                    "routes": [
                        {"servedModelName": "champion", "trafficPercentage": 90},
                        {"servedModelName": "challenger", "trafficPercentage": 10},
                    ]
                },
            }
        ],
    }
