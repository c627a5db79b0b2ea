FROM ubuntu:24.04
RUN echo before
RUN <<EOF
apt-get update
  EOF
EOF 
CMD ["bash"]
