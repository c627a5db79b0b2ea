FROM python:3.11-slim
ENTRYPOINT ["python", "-m", "http.server"]
CMD ["--bind", "0.0.0.0", \
     8000]
