"""Pulumi dynamic providers: the AWS calls Kiln makes itself (boto3), outside pulumi-aws.

Each provider lives in an importable module so dill pickles it by reference
(`infra.providers.<module>.<Class>`), not by value: the provider host process imports the
same code, and an edit to a method does not show up as a diff on every resource
(docs/sources.md, "Pulumi dynamic providers"). Providers hold no clients; they create them per call.
"""
