FROM python:3.11-slim
ONBUILD FROM python:3.12-slim
