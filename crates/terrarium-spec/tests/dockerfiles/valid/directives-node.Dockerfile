# syntax=docker/dockerfile:1.4
# check=skip=JSONArgsRecommended
#
# Parser directives first, then an ordinary comment.
FROM node:20-alpine AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev

FROM node:20-alpine
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps --chown=node:node /app/node_modules ./node_modules
COPY --chown=node:node . .
USER node
EXPOSE 3000
# Not valid JSON, so Docker runs it in the shell form: accepted.
CMD [node, server.js]
