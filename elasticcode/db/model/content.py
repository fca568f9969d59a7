"""Settings and stored files (flow layouts, cell sources) with their versions."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..base import UUID, Base, Named


class Setting(Named, Base):
    __tablename__ = "settings"
    value: Mapped[str] = mapped_column(Text)


class File(Named, Base):
    __tablename__ = "file"
    path: Mapped[str | None] = mapped_column(String(1000))
    filename: Mapped[str | None] = mapped_column(String(255))
    collection: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(String(40))
    icon: Mapped[str | None] = mapped_column(String(40))
    versions: Mapped[list[Version]] = relationship(back_populates="file", cascade="all, delete-orphan")


class Version(Named, Base):
    __tablename__ = "versions"
    file_id: Mapped[str] = mapped_column(UUID, ForeignKey("file.id", ondelete="CASCADE"), index=True)
    flow: Mapped[str | None] = mapped_column(Text)
    file: Mapped[File] = relationship(back_populates="versions")
