"""Creates a MinIO user with one policy through MinIO's admin API (the minio package)."""
import os
import sys

from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

endpoint, user, policy_file = sys.argv[1:4]
admin = MinioAdmin(endpoint=endpoint, credentials=StaticProvider(os.environ["MINIO_ROOT_USER"], os.environ["MINIO_ROOT_PASSWORD"]), secure=False)
admin.user_add(user, os.environ["NEW_USER_SECRET"])
admin.policy_add(f"{user}-policy", policy_file)
admin.attach_policy([f"{user}-policy"], user=user)
print("ok")
